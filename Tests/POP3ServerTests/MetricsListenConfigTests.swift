import Glibc
import Reactor
import Synchronization
import Testing
@testable import POP3Server

/// `metrics_listen`: parsed and checked at start, bound beside the POP3 listeners, and
/// restart-only on SIGHUP.
@Suite(.serialized) struct MetricsListenConfigTests {
    func load(_ value: String) async throws -> ServerConfig {
        try await ServerConfig.load(flags: [:], environment: ["POP3D_METRICS_LISTEN": value], configFile: nil)
    }

    @Test func offByDefault() async throws {
        let c = try await ServerConfig.load(flags: [:], environment: [:], configFile: nil)
        #expect(c.metricsListen == nil)
        #expect(try await load("").metricsListen == nil)
        #expect(try await load(" off ").metricsListen == nil)
    }

    @Test(arguments: ["127.0.0.1:9110", "[::1]:9110", "0.0.0.0:9110", " 127.0.0.2:1 "])
    func addressesAreTaken(value: String) async throws {
        #expect(try await load(value).metricsListen == value.trimmingSpaces())
    }

    @Test func theFlagWinsOverTheEnvironment() async throws {
        let c = try await ServerConfig.load(flags: ["metrics_listen": ["127.0.0.1:9111"]],
                                            environment: ["POP3D_METRICS_LISTEN": "127.0.0.1:9110"], configFile: nil)
        #expect(c.metricsListen == "127.0.0.1:9111")
    }

    @Test(arguments: ["9110", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "::1:9110", "[::1]9110",
                      "metrics.example.org:9110", "127.0.0.1:9110,127.0.0.1:9111", "127.0.0.1:-1", "on"])
    func aBadValueStopsTheStartNamingTheKey(value: String) async throws {
        do {
            _ = try await load(value)
            Issue.record("'\(value)' was accepted")
        } catch let error as ConfigError {
            #expect(error.description.hasPrefix("metrics_listen: "), "\(error)")
            #expect(error.description.contains(value.trimmingSpaces()), "\(error)")
        }
    }

    @Test func theMetricsListenerIsBoundBesideThePOP3Ones() throws {
        var config = ServerConfig()
        config.listen = ["127.0.0.1:0"]
        config.metricsListen = "127.0.0.1:0"
        let opened = try ServerRunner.openListeners(config: config)
        defer {
            for (listener, _) in opened.pop3 { listener.close() }
            opened.metrics?.close()
        }
        #expect(opened.pop3.count == 1)
        let metrics = try #require(opened.metrics)
        #expect(metrics.name == "metrics")
        #expect(metrics.address?.port != 0)
        #expect(metrics.address?.port != opened.pop3[0].listener.address?.port)
        // Close-on-exec: a worker exec'd by the master never inherits it.
        #expect(fcntl(metrics.fd, F_GETFD) & FD_CLOEXEC != 0)

        config.metricsListen = nil
        let without = try ServerRunner.openListeners(config: config)
        defer { for (listener, _) in without.pop3 { listener.close() } }
        #expect(without.metrics == nil)
    }

    @Test func aMetricsPortInUseIsAStartUpError() throws {
        guard let any = SocketAddress(ip: "127.0.0.1", port: 0) else { throw HarnessError("address") }
        let taken = try Listener(bind: any)
        defer { taken.close() }
        var config = ServerConfig()
        config.listen = ["127.0.0.1:0"]
        config.metricsListen = "127.0.0.1:\(taken.address?.port ?? 0)"
        do {
            let opened = try ServerRunner.openListeners(config: config)
            for (listener, _) in opened.pop3 { listener.close() }
            Issue.record("bound a port in use")
        } catch let error as ConfigError {
            #expect(error.description.hasPrefix("metrics_listen: cannot listen on 127.0.0.1:"), "\(error)")
        }
    }

    @Test func aReloadKeepsMetricsListenAndSaysItWaitsForARestart() throws {
        #expect(POP3Service.restartOnlyKeys.contains("metrics_listen"))
        let server = try ServerHarness { config, _ in config.metricsListen = "127.0.0.1:9110" }
        defer { server.stop() }
        var changed = try server.onLoop { $0.service.config }
        changed.metricsListen = "127.0.0.1:9111"
        changed.maxBadCommands = 7
        let next = changed
        try server.onLoop { side in
            side.service.configSource = { next }
            side.service.reload()
        }
        #expect(try waitFor(timeoutSeconds: 10) { try server.onLoop { $0.service.config.maxBadCommands } == 7 })
        #expect(try server.onLoop { $0.service.config.metricsListen } == "127.0.0.1:9110")
        #expect(waitFor(timeoutSeconds: 10) {
            server.logs.contains("metrics_listen changed but take effect only after a restart")
        })
    }
}
