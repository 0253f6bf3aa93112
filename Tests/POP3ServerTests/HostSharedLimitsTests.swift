import Glibc
import Testing
@testable import POP3Server

/// Issue 12: with workers, `max_connections` is per host. A worker admits a connection only
/// while its own count plus the other workers' counts on the scoreboard are below the limit,
/// and publishes its own count there at every change.
@Suite(.serialized) struct HostSharedLimitsTests {
    @Test func maxConnectionsCountsTheOtherWorkersOnTheScoreboard() throws {
        let board = try Scoreboard(creatingFor: 2)
        // Worker 2 (another process in real life) holds 2 connections.
        board.slot(2)[.connections] = 2
        let server = try ServerHarness { config, _ in config.maxConnections = 3 }
        defer { server.stop() }
        let share = WorkerShare(scoreboard: board, id: 1)
        try server.onLoop { side in side.service.hostShare = share }

        // 2 elsewhere + 0 here < 3: admitted, and published as worker 1's count.
        let first = try server.client()
        #expect(try first.line().hasPrefix("+OK"))
        #expect(board.slot(1)[.connections] == 1)
        // 2 + 1 = 3: refused although this worker alone holds one.
        let second = try server.client()
        #expect(try second.line() == "-ERR [SYS/TEMP] Too many connections, try again later")
        // Worker 2 lets one go: admitted again.
        board.slot(2)[.connections] = 1
        let third = try server.client()
        #expect(try third.line().hasPrefix("+OK"))
        #expect(board.slot(1)[.connections] == 2)

        // Login and session end are published too (STATUS= sums them in the master).
        #expect(try first.command("USER alice").hasPrefix("+OK"))
        #expect(try first.command("PASS secret").hasPrefix("+OK"))
        #expect(board.slot(1)[.loggedIn] == 1)
        #expect(try first.command("QUIT").hasPrefix("+OK"))
        #expect(waitFor(timeoutSeconds: 10) { board.slot(1)[.connections] == 1 && board.slot(1)[.sessionsServed] >= 1 })
        #expect(board.slot(1)[.loggedIn] == 0)
        third.close()
        second.close()
    }

}
