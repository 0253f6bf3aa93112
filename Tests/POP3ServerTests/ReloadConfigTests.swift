import Glibc
import Synchronization
import Testing
@testable import POP3Server

/// Issue 12: SIGHUP reloads "the settings that can change without a restart" too, not only
/// the passwd-file and certificates; restart-only settings keep their value and are named.
@Suite(.serialized) struct ReloadConfigTests {
    @Test func propertyNamesMapToConfigurationKeys() {
        #expect(POP3Service.configKey(forProperty: "idleTimeoutSeconds") == "idle_timeout")
        #expect(POP3Service.configKey(forProperty: "maxConnectionsPerIP") == "max_connections_per_ip")
        #expect(POP3Service.configKey(forProperty: "listenTLS") == "listen_tls")
        #expect(POP3Service.configKey(forProperty: "loopLagWarningMilliseconds") == "loop_lag_warning")
        #expect(POP3Service.configKey(forProperty: "announceImplementation") == "implementation")
        // Every property maps to a documented key (a new setting must keep the mapping true).
        for child in Mirror(reflecting: ServerConfig()).children {
            let key = POP3Service.configKey(forProperty: child.label ?? "")
            #expect(ServerConfig.keys.contains(key), "property \(child.label ?? "?") maps to unknown key \(key)")
        }
    }

    @Test func reloadAppliesLiveSettingsAndKeepsRestartOnlyOnes() throws {
        let next = Mutex<ServerConfig?>(nil)
        let server = try ServerHarness { config, _ in config.loginDelaySeconds = 0 }
        defer { server.stop() }
        var changed = try server.onLoop { $0.service.config }
        changed.loginDelaySeconds = 30
        changed.maxConnectionsPerIP = 7
        changed.proxyNetworks = ["10.9.0.0/16"]
        changed.listen = ["127.0.0.1:1"]  // restart-only
        changed.authWorkers = 9  // restart-only
        next.withLock { $0 = changed }
        let source: @Sendable () throws -> ServerConfig = {
            guard let config = next.withLock({ $0 }) else { throw ConfigError("no configuration") }
            return config
        }
        try server.onLoop { side in
            side.service.configSource = source
            side.service.reload()
        }
        #expect(try waitFor(timeoutSeconds: 10) { try server.onLoop { $0.service.config.loginDelaySeconds } == 30 })
        let after = try server.onLoop { side in
            (side.service.config, side.service.proxyNetworks.networks.count)
        }
        #expect(after.0.maxConnectionsPerIP == 7)
        #expect(after.1 == 1)
        #expect(after.0.listen.isEmpty, "listen is restart-only")
        #expect(after.0.authWorkers != 9, "auth_workers is restart-only")
        // The new LOGIN-DELAY shows in CAPA of a new session.
        let client = try server.client()
        _ = try client.line()
        #expect(try client.command("CAPA").hasPrefix("+OK"))
        let capa = try client.multiline()
        #expect(capa.contains("LOGIN-DELAY 30"), "\(capa)")
        client.close()
        #expect(waitFor(timeoutSeconds: 10) {
            server.logs.contains("configuration reloaded") && server.logs.contains("auth_workers")
        })
        #expect(server.logs.contains("changed=max_connections_per_ip,login_delay,proxy_networks"))
    }

    @Test func aBrokenReloadedValueKeepsTheWholeOldConfiguration() throws {
        let server = try ServerHarness { config, _ in config.loginDelaySeconds = 0 }
        defer { server.stop() }
        var broken = try server.onLoop { $0.service.config }
        broken.loginDelaySeconds = 30
        broken.trustedNetworks = ["not-a-network"]
        let fixed = broken
        try server.onLoop { side in
            side.service.configSource = { fixed }
            side.service.reload()
        }
        #expect(waitFor(timeoutSeconds: 10) { server.logs.contains("configuration reload refused") })
        #expect(try server.onLoop { $0.service.config.loginDelaySeconds } == 0)
        #expect(server.logs.contains("not-a-network"))
    }

}
