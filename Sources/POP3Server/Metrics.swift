import CoreMetrics
import Prometheus

extension POP3Service {
    /// The `/metrics` body of this process (Prometheus text exposition format 0.0.4),
    /// appended to `buffer`. Filled in by the lead (issue 13).
    public func renderMetrics(into buffer: inout [UInt8]) {
        buffer.append(contentsOf: Array("# pop3d metrics: not wired yet\n".utf8))
    }
}

extension WorkerMaster {
    /// The host's `/metrics` body: every worker's series summed, plus the master's own.
    /// Filled in by the lead (issue 13).
    public func renderMetrics(into buffer: inout [UInt8]) {
        buffer.append(contentsOf: Array("# pop3d metrics: not wired yet\n".utf8))
    }
}
