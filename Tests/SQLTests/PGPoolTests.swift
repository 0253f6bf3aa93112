import Glibc
import Reactor
import Testing
@testable import SQL

/// PGPool: connections opened at start and re-opened (at once after the server closed a
/// ready one, with backoff after a failed connect), once-per-outage reporting, the FIFO of
/// waiting lookups. Against a stand-in server (FakeServer.swift) where the timing is the
/// point, and against a throwaway PostgreSQL (Cluster.swift) for the real events.
struct PGPoolTests {
    typealias Runner = PGConnectionTests.Runner
    typealias Outcome = Result<PGRows, PGFailure>

    /// Records the pool's outage and recovery callbacks.
    final class Events {
        var outages: [String] = []
        var recoveries: [(seconds: Double, refused: Int)] = []
        init(_ pool: PGPool) {
            pool.onOutage = { [unowned self] in self.outages.append($0) }
            pool.onRecovery = { [unowned self] in self.recoveries.append(($0, $1)) }
        }
    }

    static func isUnavailable(_ outcome: Outcome?) -> Bool {
        if case .failure(.unavailable)? = outcome { return true }
        return false
    }

    @Test func aFailedConnectIsRetriedWithBackoffDoublingToTheMaximum() throws {
        let loop = try EventLoop()
        let runner = Runner(loop)
        let fake = try FakeServer(loop: loop, mode: .closeAtOnce)
        defer { fake.close() }
        let pool = PGPool(loop: loop, info: try ConnectInfo(fake.conninfo), connections: 1, timeoutNanoseconds: 5_000_000_000)
        let events = Events(pool)
        pool.start()
        // Attempts at 0, 0.1, 0.3, 0.7, 1.5, 3.1, 5.1 s: the sixth wait is capped at 2 s
        // (PGPool.maxBackoff, written out so that a changed cap is noticed).
        let expected = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
        #expect(try runner.run(seconds: 20) { fake.accepted.count > expected.count })
        let intervals = zip(fake.accepted.dropFirst(), fake.accepted).map { $0 - $1 }
        for (interval, wanted) in zip(intervals, expected) {
            #expect(interval >= wanted * 0.9 && interval < wanted + 0.6,
                    "waits \(intervals.map { ($0 * 1000).rounded() / 1000 }) s, expected \(expected)")
        }
        #expect(events.outages.count == 1, "one outage however many attempts fail: \(events.outages)")
        #expect(events.recoveries.isEmpty)
        pool.stop()
    }

    @Test func withEveryConnectionInBackoffALookupFailsAtOnceAndTheOutageIsReportedOnce() throws {
        let loop = try EventLoop()
        let runner = Runner(loop)
        let fake = try FakeServer(loop: loop, mode: .closeAtOnce)
        defer { fake.close() }
        let pool = PGPool(loop: loop, info: try ConnectInfo(fake.conninfo), connections: 2, timeoutNanoseconds: 5_000_000_000)
        let events = Events(pool)
        pool.start()
        #expect(try runner.run(seconds: 20) { fake.accepted.count >= 6 && pool.connectionStates.allSatisfy { $0 == .closed } })
        // The loop is not running: no backoff timer can fire, every connection is waiting.
        for _ in 0..<20 {
            var outcome: Outcome?
            pool.query("SELECT 1", parameters: []) { outcome = $0 }
            #expect(Self.isUnavailable(outcome), "failed at once: \(String(describing: outcome))")
        }
        #expect(pool.waitingCount == 0)
        #expect(events.outages.count == 1, "\(events.outages)")
        #expect(events.outages.first?.contains("closed the connection") == true, "libpq's reason: \(events.outages)")
        pool.stop()
    }

    @Test func stopFailsTheWaitingLookupsInOrderAndTheFIFOIsBounded() throws {
        let loop = try EventLoop()
        let runner = Runner(loop)
        let fake = try FakeServer(loop: loop, mode: .hold)
        defer { fake.close() }
        let pool = PGPool(loop: loop, info: try ConnectInfo(fake.conninfo), connections: 2, timeoutNanoseconds: 10_000_000_000)
        let events = Events(pool)
        pool.start()
        // Both connections reached the server, which never answers: they stay connecting.
        #expect(try runner.run(seconds: 20) { fake.accepted.count == 2 })
        #expect(pool.connectionStates == [.connecting, .connecting])
        var order: [Int] = []
        var outcomes: [Int: Outcome] = [:]
        for i in 0..<PGPool.maxWaiting {
            pool.query("SELECT 1", parameters: []) { order.append(i); outcomes[i] = $0 }
        }
        #expect(order.isEmpty, "lookups wait while the connections are connecting")
        #expect(pool.waitingCount == PGPool.maxWaiting)
        var overflow: Outcome?
        pool.query("SELECT 1", parameters: []) { overflow = $0 }
        guard case .failure(.unavailable(let why))? = overflow else {
            Issue.record("lookup \(PGPool.maxWaiting + 1) did not fail at once: \(String(describing: overflow))")
            return
        }
        #expect(why.contains("\(PGPool.maxWaiting) lookups already waiting"))
        pool.stop()
        #expect(order.count == PGPool.maxWaiting, "every waiting lookup failed at once")
        #expect(zip(order, order.dropFirst()).allSatisfy { $0 < $1 }, "first in, first out")
        #expect(outcomes.values.allSatisfy { Self.isUnavailable($0) })
        #expect(pool.waitingCount == 0)
        #expect(pool.connectionStates == [.closed, .closed])
        var after: Outcome?
        pool.query("SELECT 1", parameters: []) { after = $0 }
        #expect(Self.isUnavailable(after), "a stopped pool refuses at once")
        // A shutdown is not an outage.
        #expect(events.outages.isEmpty, "\(events.outages)")
        // Nothing fires later: the waits' timers were cancelled.
        let timers = loop.scheduledTimerCount
        #expect(timers < 10, "\(timers) timers left after stop()")
    }

    @Test func lookupsWaitInOrderWhileTheConnectionIsBusyAndExpireAfterTheTimeout() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = Runner(loop)
        let pool = PGPool(loop: loop, info: try ConnectInfo(cluster.conninfo), connections: 1, timeoutNanoseconds: 3_000_000_000)
        let events = Events(pool)
        var finished: [(String, Outcome, Double)] = []
        let started = cshimFreeMonotonicSeconds()
        func ask(_ label: String, _ sql: String) {
            pool.query(sql, parameters: [Array(label.utf8)]) { finished.append((label, $0, cshimFreeMonotonicSeconds() - started)) }
        }
        pool.start()
        // Asked while the connection is still connecting: A waits for it, B and C behind A.
        // Timeout 3 s: A runs 0-2 s, B 2-4 s; C expires at 3 s, 1 s from either end.
        ask("A", "SELECT $1::text, pg_sleep(2)")
        ask("B", "SELECT $1::text, pg_sleep(2)")
        ask("C", "SELECT $1::text")
        #expect(finished.isEmpty)
        #expect(pool.waitingCount == 3)
        #expect(try runner.run(seconds: 30) { finished.count == 3 })
        let labels = finished.map(\.0)
        #expect(labels == ["A", "C", "B"], "A served first; C expired waiting while B ran; then B")
        guard finished.count == 3 else { return }
        #expect(try finished[0].1.get().rows.first?.first == Array("A".utf8))
        #expect(try finished[2].1.get().rows.first?.first == Array("B".utf8))
        guard case .failure(.unavailable(let why)) = finished[1].1 else {
            Issue.record("C: \(finished[1].1)")
            return
        }
        #expect(why.contains("within the timeout"), "\(why)")
        #expect(finished[1].2 >= 2.9, "C waited out the whole timeout: \(finished[1].2) s")
        #expect(pool.waitingCount == 0)
        #expect(events.outages.isEmpty, "a lookup that waited too long is not a lost database: \(events.outages)")
        pool.stop()
    }

    @Test func anAbandonedLookupIsSkippedWhenItsTurnComes() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = Runner(loop)
        let pool = PGPool(loop: loop, info: try ConnectInfo(cluster.conninfo), connections: 1, timeoutNanoseconds: 10_000_000_000)
        var finished: [(String, Outcome, Double)] = []
        let started = cshimFreeMonotonicSeconds()
        var gone: Set<String> = []
        func ask(_ label: String, _ sql: String) {
            pool.query(sql, parameters: [Array(label.utf8)], abandoned: { gone.contains(label) }) {
                finished.append((label, $0, cshimFreeMonotonicSeconds() - started))
            }
        }
        pool.start()
        // A runs 0-1 s; B (1 s more) and C wait behind it. B's client leaves while it waits:
        // when A is done, B is completed without a query and C runs at once (at ~1 s, not ~2 s).
        ask("A", "SELECT $1::text, pg_sleep(1)")
        ask("B", "SELECT $1::text, pg_sleep(1)")
        ask("C", "SELECT $1::text")
        gone.insert("B")
        #expect(try runner.run(seconds: 30) { finished.count == 3 })
        #expect(finished.map(\.0) == ["A", "B", "C"])
        guard finished.count == 3 else { return }
        guard case .failure(.unavailable(let why)) = finished[1].1 else {
            Issue.record("B: \(finished[1].1)")
            return
        }
        #expect(why.contains("went away"), "\(why)")
        #expect(try finished[2].1.get().rows.first?.first == Array("C".utf8))
        #expect(finished[2].2 < 1.8, "C waited for B's query: \(finished[2].2) s")
        pool.stop()
    }

    @Test func aLookupWhoseConnectionIsKilledUnderItRunsAgainOnTheReopenedOne() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = Runner(loop)
        let pool = PGPool(loop: loop, info: try ConnectInfo(cluster.conninfo), connections: 1, timeoutNanoseconds: 10_000_000_000)
        pool.start()
        #expect(try runner.run(seconds: 20) { pool.readyCount == 1 })
        var outcome: Outcome?
        pool.query("SELECT $1::text, pg_sleep(0.5)", parameters: [Array("again".utf8)]) { outcome = $0 }
        #expect(pool.connectionStates == [.busy])
        // The loop is not running while psql kills the backend under the query.
        try cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid();")
        #expect(try runner.run(seconds: 20) { outcome != nil })
        #expect(try outcome?.get().rows.first?.first == Array("again".utf8), "\(String(describing: outcome))")
        pool.stop()
    }

    /// A one-connection pool whose server accepted and never answers: every lookup waits in
    /// the FIFO (the loop, not running after this, fires no timer).
    static func poolOnAServerThatNeverAnswers() throws -> (FakeServer, PGPool) {
        let loop = try EventLoop()
        let runner = Runner(loop)
        let fake = try FakeServer(loop: loop, mode: .hold)
        let pool = PGPool(loop: loop, info: try ConnectInfo(fake.conninfo), connections: 1, timeoutNanoseconds: 10_000_000_000)
        pool.start()
        guard try runner.run(seconds: 20, until: { fake.accepted.count == 1 }) else {
            fake.close()
            throw Failure("the fake server saw no connection within 20 s")
        }
        return (fake, pool)
    }

    @Test func aFullQueueDropsItsAbandonedLookupsBeforeRefusing() throws {
        let (fake, pool) = try Self.poolOnAServerThatNeverAnswers()
        defer { fake.close() }
        var outcomes: [Int: Outcome] = [:]
        var gone = false
        // Every other waiting lookup belongs to a client that then leaves.
        for i in 0..<PGPool.maxWaiting {
            pool.query("SELECT 1", parameters: [], abandoned: i % 2 == 0 ? { gone } : nil) { outcomes[i] = $0 }
        }
        gone = true
        var next: Outcome?
        pool.query("SELECT 1", parameters: []) { next = $0 }
        #expect(next == nil, "queued, not refused: \(String(describing: next))")
        // One search asks at most `abandonedScanBatch` lookups (the even ones of the first
        // 2 × batch): those it finds abandoned are dropped.
        #expect(pool.waitingCount == PGPool.maxWaiting - PGPool.abandonedScanBatch + 1)
        #expect(outcomes.count == PGPool.abandonedScanBatch)
        #expect(outcomes.keys.allSatisfy { $0 % 2 == 0 } && outcomes.values.allSatisfy { Self.isUnavailable($0) })
        pool.stop()
    }

    /// During an outage the FIFO stays full: a refused lookup must not ask every waiting
    /// one whether its client left (a `recv` each) again within the scan interval.
    @Test func aFullQueueIsSearchedForAbandonedLookupsAtMostOncePerInterval() throws {
        let (fake, pool) = try Self.poolOnAServerThatNeverAnswers()
        defer { fake.close() }
        var asked = 0
        for _ in 0..<PGPool.maxWaiting {
            pool.query("SELECT 1", parameters: [], abandoned: { asked += 1; return false }) { _ in }
        }
        var first: Outcome?
        pool.query("SELECT 1", parameters: []) { first = $0 }
        #expect(Self.isUnavailable(first), "refused: \(String(describing: first))")
        #expect(asked == PGPool.abandonedScanBatch, "the first refusal searched one batch of the FIFO")
        var second: Outcome?
        pool.query("SELECT 1", parameters: []) { second = $0 }
        #expect(Self.isUnavailable(second), "refused: \(String(describing: second))")
        #expect(asked == PGPool.abandonedScanBatch, "the second refusal, in the same turn, searched nothing")
        pool.stop()
    }

    static let backends = """
        SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity
         WHERE usename = 'pop3test' AND backend_type = 'client backend' AND pid <> pg_backend_pid();
        """

    @Test func connectionsOpenAtStartAndOneClosedByTheServerIsReopenedAtOnce() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = Runner(loop)
        let pool = PGPool(loop: loop, info: try ConnectInfo(cluster.conninfo), connections: 2, timeoutNanoseconds: 5_000_000_000)
        let events = Events(pool)
        pool.start()
        #expect(try runner.run(seconds: 20) { pool.readyCount == 2 })
        let before = try cluster.psqlOutput(Self.backends).split(separator: ",")
        #expect(before.count == 2, "two server backends: \(before)")

        try cluster.terminateClientBackends()
        let killed = cshimFreeMonotonicSeconds()
        #expect(try runner.run(seconds: 20) { pool.readyCount < 2 }, "the pool noticed the closed connections")
        #expect(try runner.run(seconds: 20) { pool.readyCount == 2 })
        let reopened = cshimFreeMonotonicSeconds() - killed
        #expect(reopened < 5, "re-opened within \(reopened) s")
        // A terminated backend stays in pg_stat_activity until its process has exited: wait
        // (bounded) for the list to settle on the two new ones.
        var after = try cluster.psqlOutput(Self.backends).split(separator: ",")
        let settleDeadline = cshimFreeMonotonicSeconds() + 10
        while !(after.count == 2 && Set(after).isDisjoint(with: before)) && cshimFreeMonotonicSeconds() < settleDeadline {
            _ = try runner.run(seconds: 0.05) { false }
            after = try cluster.psqlOutput(Self.backends).split(separator: ",")
        }
        #expect(after.count == 2 && Set(after).isDisjoint(with: before), "new backends \(after), old \(before)")
        var outcome: Outcome?
        pool.query("SELECT $1::text", parameters: [Array("ok".utf8)]) { outcome = $0 }
        #expect(try runner.run(seconds: 20) { outcome != nil })
        #expect(try outcome?.get().rows == [[Array("ok".utf8)]])
        // Re-opened at once, no lookup refused: not an outage (no "user database
        // unavailable" warning for an administrator's pg_terminate_backend).
        #expect(events.outages.isEmpty, "closing a ready connection that re-opened at once was reported: \(events.outages)")
        #expect(events.recoveries.isEmpty, "\(events.recoveries.map(\.seconds))")
        pool.stop()
    }

    /// Between the server closing a ready connection and the pool re-opening it, a lookup
    /// waits for the new connection: it is not refused as if the database were down.
    @Test func aLookupRightAfterTheServerClosedTheConnectionWaitsForTheReopenedOne() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = Runner(loop)
        let pool = PGPool(loop: loop, info: try ConnectInfo(cluster.conninfo), connections: 1, timeoutNanoseconds: 5_000_000_000)
        let events = Events(pool)
        pool.start()
        #expect(try runner.run(seconds: 20) { pool.readyCount == 1 })
        try cluster.terminateClientBackends()
        // Stops at the end of the loop turn in which the pool saw the connection go.
        #expect(try runner.run(seconds: 20) { pool.readyCount == 0 })
        var outcome: Outcome?
        pool.query("SELECT $1::text", parameters: [Array("waited".utf8)]) { outcome = $0 }
        #expect(try runner.run(seconds: 20) { outcome != nil })
        #expect(try outcome?.get().rows == [[Array("waited".utf8)]], "\(String(describing: outcome))")
        #expect(events.outages.isEmpty, "\(events.outages)")
        pool.stop()
    }

    @Test func aQueryPastTheTimeoutIsOneOutageAndTheNextAnsweredQueryItsRecovery() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = Runner(loop)
        let pool = PGPool(loop: loop, info: try ConnectInfo(cluster.conninfo), connections: 1, timeoutNanoseconds: 500_000_000)
        let events = Events(pool)
        pool.start()
        #expect(try runner.run(seconds: 20) { pool.readyCount == 1 })
        var outcome: Outcome?
        pool.query("SELECT pg_sleep(30)", parameters: []) { outcome = $0 }
        #expect(try runner.run(seconds: 20) { outcome != nil })
        #expect(outcome == .failure(.unavailable("query timed out")))
        #expect(try runner.run(seconds: 20) { pool.readyCount == 1 })
        #expect(events.outages == ["query timed out"])
        // The re-opened connection proves nothing about a slow database: the outage ends
        // with the next query it answers.
        #expect(events.recoveries.isEmpty, "\(events.recoveries)")
        var second: Outcome?
        pool.query("SELECT 1", parameters: []) { second = $0 }
        #expect(try runner.run(seconds: 20) { second != nil })
        #expect(events.recoveries.map(\.refused) == [1])
        pool.stop()
    }

    @Test func aStoppedDatabaseIsOneOutageAndItsRestartOneRecoveryWithTheRefusedCount() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = Runner(loop)
        let pool = PGPool(loop: loop, info: try ConnectInfo(cluster.conninfo), connections: 2, timeoutNanoseconds: 2_000_000_000)
        let events = Events(pool)
        pool.start()
        #expect(try runner.run(seconds: 20) { pool.readyCount == 2 })

        cluster.stopServer()
        #expect(try runner.run(seconds: 20) {
            !events.outages.isEmpty && pool.connectionStates.allSatisfy { $0 == .closed }
        })
        for _ in 0..<5 {
            var outcome: Outcome?
            pool.query("SELECT 1", parameters: []) { outcome = $0 }
            #expect(Self.isUnavailable(outcome), "refused at once while every connection waits: \(String(describing: outcome))")
        }
        // A few more failed attempts (at 0.1, 0.3, 0.7 s of backoff): still one outage.
        _ = try runner.run(seconds: 0.8) { false }
        #expect(events.outages.count == 1, "\(events.outages)")
        #expect(events.recoveries.isEmpty)

        try cluster.startServer()
        #expect(try runner.run(seconds: 20) { pool.readyCount == 2 })
        #expect(events.outages.count == 1, "\(events.outages)")
        #expect(events.recoveries.count == 1, "one recovery for two connections: \(events.recoveries.map(\.refused))")
        #expect(events.recoveries.first?.refused == 5)
        #expect((events.recoveries.first?.seconds ?? 0) >= 0.8, "\(events.recoveries.map(\.seconds))")
        var outcome: Outcome?
        pool.query("SELECT $1::text", parameters: [Array("back".utf8)]) { outcome = $0 }
        #expect(try runner.run(seconds: 20) { outcome != nil })
        #expect(try outcome?.get().rows == [[Array("back".utf8)]])
        pool.stop()
    }
}
