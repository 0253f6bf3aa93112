import Glibc
import Reactor
import Testing
@testable import SQL

/// PGConnection against a real, throwaway PostgreSQL (Cluster.swift).
struct PGConnectionTests {
    static let setup = """
        CREATE TABLE mailbox (username text PRIMARY KEY, password text NOT NULL, maildir text, active boolean NOT NULL DEFAULT true);
        INSERT INTO mailbox VALUES ('alice@example.org', '{PLAIN}secret', 'example.org/alice/', true);
        INSERT INTO mailbox VALUES ('bob@example.org', '{PLAIN}other', NULL, true);
        """
    static let lookup = "SELECT password, maildir AS home FROM mailbox WHERE username = $1 AND active"

    /// Runs `loop` until a condition holds or a deadline passes (one before-wait hook per
    /// loop: the loop keeps its hooks for its whole life).
    final class Runner {
        let loop: EventLoop
        var condition: (() -> Bool)?

        init(_ loop: EventLoop) {
            self.loop = loop
            loop.addBeforeWaitHook { [unowned self] in
                if let condition = self.condition, condition() { self.loop.stop() }
            }
        }

        /// Whether `done()` became true within `seconds`.
        func run(seconds: Double, until done: @escaping () -> Bool) throws -> Bool {
            condition = done
            defer { condition = nil }
            let loop = self.loop
            let deadline = loop.scheduleTimer(after: UInt64(seconds * 1e9)) { loop.stop() }
            try loop.run()
            loop.cancelTimer(deadline)
            return done()
        }
    }

    @Test func connectsAndRunsAParameterisedQueryOnTheLoop() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        try cluster.psql(Self.setup)
        let loop = try EventLoop()
        let runner = Runner(loop)
        let connection = PGConnection(loop: loop, info: try ConnectInfo(cluster.conninfo), label: "test",
                                      timeoutNanoseconds: 10_000_000_000)
        var closedReason: String?
        connection.onClosed = { closedReason = $0 }
        connection.connect()
        #expect(connection.state == .connecting)
        #expect(try runner.run(seconds: 20) { connection.state != .connecting })
        #expect(connection.state == .ready, "closed: \(closedReason ?? "-")")

        var answers: [Result<PGRows, PGFailure>] = []
        let names: [[UInt8]] = [
            Array("alice@example.org".utf8),
            Array("bob@example.org".utf8),
            Array("x' OR '1'='1".utf8),
            Array("a;DROP TABLE mailbox".utf8),
            [UInt8](repeating: 0x61, count: 300),
        ]
        var next = 0
        func ask() {
            guard next < names.count else { return }
            let name = names[next]
            next += 1
            connection.query(Self.lookup, parameters: [name]) { answers.append($0); ask() }
        }
        ask()
        #expect(try runner.run(seconds: 20) { answers.count == names.count })
        guard answers.count == names.count else { return }
        let alice = try answers[0].get()
        #expect(alice.columns == ["password", "home"])
        #expect(alice.rows == [[Array("{PLAIN}secret".utf8), Array("example.org/alice/".utf8)]])
        #expect(try answers[1].get().rows == [[Array("{PLAIN}other".utf8), nil]])
        for answer in answers[2...] {
            #expect(try answer.get().rows.isEmpty, "an injection attempt or a long name is just an unknown user")
        }
        // The table is intact: both users are still there.
        var count: Result<PGRows, PGFailure>?
        connection.query("SELECT count(*) FROM mailbox", parameters: []) { count = $0 }
        #expect(try runner.run(seconds: 20) { count != nil })
        #expect(try count?.get().rows == [[Array("2".utf8)]])
        // A NUL in a binary text parameter is refused by the server (invalid byte sequence,
        // SQLSTATE class 22): an error answer, and the connection stays usable.
        var nul: Result<PGRows, PGFailure>?
        connection.query(Self.lookup, parameters: [[0x61, 0x00, 0x62]]) { nul = $0 }
        #expect(try runner.run(seconds: 20) { nul != nil })
        guard case .failure(.server(let sqlstate, _))? = nul else {
            Issue.record("a NUL in a text parameter: \(String(describing: nul))")
            return
        }
        #expect(sqlstate.hasPrefix("22"))
        #expect(connection.state == .ready)
        connection.close()
        #expect(closedReason == nil)
    }

    @Test func aQueryPastTheTimeoutClosesTheConnectionWithoutBlockingTheLoop() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = Runner(loop)
        let connection = PGConnection(loop: loop, info: try ConnectInfo(cluster.conninfo), label: "test",
                                      timeoutNanoseconds: 300_000_000)
        var closedReason: String?
        connection.onClosed = { closedReason = $0 }
        connection.connect()
        #expect(try runner.run(seconds: 20) { connection.state != .connecting })
        #expect(connection.state == .ready, "closed: \(closedReason ?? "-")")

        // A timer that must keep firing while the query is stuck: the loop is never blocked.
        var ticks = 0
        var ticking = true  // false at the end: a timer rescheduling itself keeps the loop alive
        func tick() { _ = loop.scheduleTimer(after: 20_000_000) { ticks += 1; if ticking { tick() } } }
        tick()
        var answer: Result<PGRows, PGFailure>?
        let started = cshimFreeMonotonicSeconds()
        connection.query("SELECT pg_sleep(30)", parameters: []) { answer = $0 }
        #expect(try runner.run(seconds: 20) { answer != nil })
        let elapsed = cshimFreeMonotonicSeconds() - started
        #expect(answer == .failure(.unavailable("query timed out")))
        #expect(closedReason == "query timed out")
        #expect(connection.state == .closed)
        #expect(elapsed < 10, "the timeout closes the connection, it does not wait for pg_sleep: \(elapsed) s")
        #expect(ticks >= 5, "the loop kept turning while the query was outstanding: \(ticks) ticks")

        // Reconnecting works and the new connection answers.
        connection.connect()
        #expect(try runner.run(seconds: 20) { connection.state != .connecting })
        #expect(connection.state == .ready)
        var again: Result<PGRows, PGFailure>?
        connection.query("SELECT $1::text", parameters: [Array("ok".utf8)]) { again = $0 }
        #expect(try runner.run(seconds: 20) { again != nil })
        #expect(try again?.get().rows == [[Array("ok".utf8)]])
        connection.close()
        ticking = false
        let seen = ticks
        #expect(try runner.run(seconds: 5) { ticks > seen })  // the last tick ran and stopped
    }

    @Test func aRefusedConnectionClosesWithLibpqsReason() throws {
        let loop = try EventLoop()
        let runner = Runner(loop)
        // A socket folder where no server listens.
        let connection = PGConnection(loop: loop, info: try ConnectInfo("host=/nonexistent-pop3d dbname=x"),
                                      label: "test", timeoutNanoseconds: 5_000_000_000)
        var closedReason: String?
        connection.onClosed = { closedReason = $0 }
        connection.connect()
        #expect(try runner.run(seconds: 20) { closedReason != nil })
        #expect(connection.state == .closed)
        #expect(closedReason?.contains("/nonexistent-pop3d") == true, "\(closedReason ?? "-")")
    }
}

/// CLOCK_MONOTONIC in seconds.
func cshimFreeMonotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}
