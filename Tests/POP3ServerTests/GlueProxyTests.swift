import Glibc
import Testing
@testable import POP3Server

/// PROXY protocol in the glue (POP3Service+Proxy.swift), in process: the harness's clients
/// connect from 127.0.0.1, which these tests put in `proxy_networks`.
@Suite(.serialized) struct GlueProxyTests {
    static func proxied(_ configure: @escaping (inout ServerConfig) -> Void = { _ in }) throws -> ServerHarness {
        try ServerHarness { config, _ in
            config.proxyNetworks = ["127.0.0.0/8"]
            config.disablePlaintextAuth = false
            configure(&config)
        }
    }

    /// v2 LOCAL (proxy-protocol.txt §2.2: command 0x0, family AF_UNSPEC, no address block).
    static let v2Local: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
                                   0x20, 0x00, 0x00, 0x00]

    static func v1(_ source: String) -> String { "PROXY TCP4 \(source) 198.51.100.1 40000 110\r\n" }

    /// The per-address cap counts the header's address, after the header; the balancer's own
    /// address (three connections here) and a v2 LOCAL health check are counted nowhere.
    @Test func perAddressCapUsesTheHeaderAddressAndSkipsHealthChecks() throws {
        let server = try Self.proxied { $0.maxConnectionsPerIP = 1 }
        let check = try server.client()
        try check.send(Self.v2Local)
        #expect(try check.line().hasPrefix("+OK"))
        let a = try server.client()
        try a.send(Self.v1("192.0.2.1"))
        #expect(try a.line().hasPrefix("+OK"))
        let b = try server.client()
        try b.send(Self.v1("192.0.2.2"))
        #expect(try b.line().hasPrefix("+OK"))
        let again = try server.client()
        try again.send(Self.v1("192.0.2.1"))
        #expect(try again.line() == "-ERR [SYS/TEMP] Too many connections, try again later")
        #expect(try server.counts().connections == 3)
        #expect(server.logs.all.contains { $0.contains("connection refused") && $0.contains("client=192.0.2.1:40000") })
        // The health check logs no session summary at info.
        #expect(try check.command("QUIT").hasPrefix("+OK"))
        #expect(try check.waitForClose())
        #expect(waitFor { server.logs.contains("health check end") })
        #expect(!server.logs.contains("session end"))
    }

    /// A connection waiting for its header holds a `max_connections` slot, gets nothing sent,
    /// and a drain closes it at once.
    @Test func pendingHeaderCountsAgainstMaxConnectionsAndDrainClosesIt() throws {
        let server = try Self.proxied { $0.maxConnections = 1 }
        let pending = try server.client()
        try pending.send("PROXY TCP4 192.0.2.1")
        #expect(try waitFor { try server.onLoop { $0.service.pendingProxyHeaders.count } == 1 })
        let refused = try server.client()
        #expect(try refused.waitForClose())
        #expect(refused.leftover.isEmpty)
        try server.onLoop { $0.service.drain() }
        #expect(try pending.waitForClose())
        #expect(pending.leftover.isEmpty)
        #expect(try server.onLoop { $0.service.pendingProxyHeaders.count } == 0)
        #expect(server.logs.contains("PROXY header refused: shutting down"))
    }

    /// A header from outside proxy_networks is never honoured: the connection is closed, and
    /// the peer's own address stays in the log.
    @Test func headerFromOutsideProxyNetworksClosesTheConnection() throws {
        let server = try ServerHarness { config, _ in config.proxyNetworks = ["10.0.0.0/8"] }
        let c = try server.client()
        #expect(try c.line().hasPrefix("+OK"))
        #expect(try c.command("PROXY TCP4 192.0.2.1 198.51.100.1 40000 110")
            .hasPrefix("-ERR PROXY header not accepted"))
        #expect(try c.waitForClose())
        #expect(waitFor { server.logs.contains("session end") })
        #expect(server.logs.all.contains { $0.contains("session end") && $0.contains("client=127.0.0.1:") })
        #expect(!server.logs.contains("192.0.2.1"))
    }

    @Test func invalidProxyNetworkIsAStartUpError() throws {
        #expect(throws: HarnessError.self) {
            _ = try ServerHarness { config, _ in config.proxyNetworks = ["10.0.0.300/8"] }
        }
    }

    @Test func proxySettingsFromTheEnvironment() async throws {
        let c = try await ServerConfig.load(
            flags: [:], environment: ["POP3D_PROXY_NETWORKS": "10.0.0.0/8, ::1/128", "POP3D_PROXY_HEADER_TIMEOUT": "7"],
            configFile: nil)
        #expect(c.proxyNetworks == ["10.0.0.0/8", "::1/128"])
        #expect(c.proxyHeaderTimeoutSeconds == 7)
        #expect(ServerConfig().proxyNetworks.isEmpty)
        #expect(ServerConfig().proxyHeaderTimeoutSeconds == 5)
        await #expect(throws: ConfigError.self) {
            _ = try await ServerConfig.load(flags: [:], environment: ["POP3D_PROXY_HEADER_TIMEOUT": "0"], configFile: nil)
        }
    }
}
