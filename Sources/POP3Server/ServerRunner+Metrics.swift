import Logging
import Reactor

extension ServerRunner {
    /// Single process: serves `metrics_listen` from this loop with this process's metrics.
    /// A worker never has a metrics listener: its master serves the host's.
    func startMetrics() throws {
        guard worker == nil, let metricsListener, let service else { return }
        service.enableMetrics()
        metrics = try MetricsEndpoint(loop: loop, listener: metricsListener, logger: logger) { [unowned service] in
            service.renderMetrics(into: &$0)
        }
        MetricsEndpoint.logListening(metricsListener, logger: logger)
    }
}

extension MetricsEndpoint {
    /// The `listening` line of the metrics listener, beside the POP3 listeners' lines.
    static func logListening(_ listener: Listener, logger: Logger) {
        logger.info("listening", metadata: [
            "address": "\(listener.address.map { "\($0)" } ?? "fd \(listener.fd)")",
            "metrics": "/metrics", "inherited": "\(listener.inherited)",
        ])
    }
}
