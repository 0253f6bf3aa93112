import Glibc
import Testing
@testable import POP3Server

/// Issue 10 item 6: `pop3d demo` sizes max_connections to the descriptor limit, so its first
/// start does not warn; the runner's descriptor arithmetic never traps.
@Suite struct DemoLimitsTests {
    @Test func descriptorArithmeticIsExactAndSaturates() {
        let reserve = ServerRunner.descriptorReserve
        let per = rlim_t(ServerRunner.descriptorsPerSession)
        #expect(ServerRunner.descriptorsNeeded(maxConnections: 0) == reserve)
        #expect(ServerRunner.descriptorsNeeded(maxConnections: 50_000) == 50_000 * per + reserve)
        #expect(ServerRunner.descriptorsNeeded(maxConnections: Int.max) == rlim_t.max)
        #expect(ServerRunner.descriptorsNeeded(maxConnections: -5) == reserve)
        #expect(ServerRunner.connectionsFitting(descriptors: 0) == 0)
        #expect(ServerRunner.connectionsFitting(descriptors: reserve) == 0)
        #expect(ServerRunner.connectionsFitting(descriptors: rlim_t.max) > 0)
        for limit: rlim_t in [reserve + 1, reserve + 2, 4096, 20_000, 1 << 20] {
            let fits = ServerRunner.connectionsFitting(descriptors: limit)
            #expect(ServerRunner.descriptorsNeeded(maxConnections: fits) <= limit, "limit \(limit)")
            #expect(ServerRunner.descriptorsNeeded(maxConnections: fits + 1) > limit, "limit \(limit)")
        }
    }

    @Test func demoConfigFitsTheHardLimit() {
        let layout = DemoSetup.Layout(root: "/d", passwdFile: "/d/passwd", mailTemplate: "maildir:/d/%u/Maildir", maildir: "/d/demo/Maildir")
        for hard: rlim_t in [1100, 4096, 20_000] {
            let config = layout.serverConfig(listen: "127.0.0.1:1110", hardLimit: hard)
            #expect(ServerRunner.descriptorsNeeded(maxConnections: config.maxConnections) <= hard, "hard limit \(hard)")
            #expect(config.maxConnections >= 1)
            #expect(config.maxUnauthenticated <= config.maxConnections)
            #expect(config.listen == ["127.0.0.1:1110"])
            #expect(config.passwdFile == "/d/passwd")
            #expect(config.mail == "maildir:/d/%u/Maildir")
        }
        // A limit that carries more than the default asks only for the default.
        #expect(layout.serverConfig(listen: "x", hardLimit: rlim_t.max).maxConnections == ServerConfig().maxConnections)
        #expect(layout.serverConfig(listen: "x", hardLimit: nil).maxConnections == ServerConfig().maxConnections)
        // This machine's own limit: the runner would not warn.
        if let hard = ServerRunner.descriptorLimits()?.hard {
            let config = layout.serverConfig(listen: "x")
            #expect(ServerRunner.descriptorsNeeded(maxConnections: config.maxConnections) <= hard || config.maxConnections == 1)
        }
    }
}
