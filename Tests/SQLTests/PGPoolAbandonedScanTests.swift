import Reactor
import Testing
@testable import SQL

/// The search of a full FIFO for lookups whose clients left: at most
/// `PGPool.abandonedScanBatch` probes (a `recv(MSG_PEEK)` each in the glue) in one loop turn,
/// and the next search resumes where the last one stopped, so abandoned lookups anywhere in
/// the FIFO are found within ceil(maxWaiting / batch) searches.
struct PGPoolAbandonedScanTests {
    typealias Outcome = Result<PGRows, PGFailure>

    /// `PGPoolTests.poolOnAServerThatNeverAnswers` with its runner, to let time pass.
    static func poolOnAServerThatNeverAnswers() throws -> (FakeServer, PGPool, PGConnectionTests.Runner) {
        let loop = try EventLoop()
        let runner = PGConnectionTests.Runner(loop)
        let fake = try FakeServer(loop: loop, mode: .hold)
        // 60 s: no waiting lookup expires while the test lets the scan intervals pass.
        let pool = PGPool(loop: loop, info: try ConnectInfo(fake.conninfo), connections: 1, timeoutNanoseconds: 60_000_000_000)
        pool.start()
        guard try runner.run(seconds: 20, until: { fake.accepted.count == 1 }) else {
            fake.close()
            throw Failure("the fake server saw no connection within 20 s")
        }
        return (fake, pool, runner)
    }

    /// Runs the loop a little longer than the scan interval, so that `loop.now` allows the
    /// next search.
    static func letTheScanIntervalPass(_ runner: PGConnectionTests.Runner) throws {
        let seconds = Double(PGPool.abandonedScanIntervalNanoseconds) / 1e9 * 1.2
        _ = try runner.run(seconds: seconds, until: { false })
    }

    @Test func abandonedLookupsAtTheEndOfAFullFIFOAreFoundBatchByBatch() throws {
        let (fake, pool, runner) = try Self.poolOnAServerThatNeverAnswers()
        defer { fake.close() }
        let batch = PGPool.abandonedScanBatch
        let total = PGPool.maxWaiting
        #expect(batch > 0 && batch < total, "the cap bounds a search of a full FIFO")
        var probes = [Int](repeating: 0, count: total)
        var asked = 0
        var outcomes: [Int: Outcome] = [:]
        var gone = false
        // The clients of the last `batch` lookups leave: the only abandoned ones sit at the end.
        for i in 0..<total {
            let leaves = i >= total - batch
            pool.query("SELECT 1", parameters: [], abandoned: {
                probes[i] += 1
                asked += 1
                return leaves && gone
            }) { outcomes[i] = $0 }
        }
        #expect(pool.waitingCount == total)
        gone = true
        let searches = (total + batch - 1) / batch
        for search in 1...searches {
            try Self.letTheScanIntervalPass(runner)
            asked = 0
            var refused: Outcome?
            pool.query("SELECT 1", parameters: []) { refused = $0 }
            #expect(asked <= batch, "search \(search) asked \(asked) lookups, more than the cap of \(batch)")
            if search < searches {
                #expect(PGPoolTests.isUnavailable(refused), "search \(search): nothing abandoned yet, refused at once")
                #expect(outcomes.count == 0, "search \(search) dropped lookups whose clients stayed")
            } else {
                #expect(refused == nil, "the last search freed room: queued, not refused")
            }
        }
        #expect(outcomes.count == batch, "every abandoned lookup dropped: \(outcomes.count) of \(batch)")
        #expect(outcomes.keys.allSatisfy { $0 >= total - batch } && outcomes.values.allSatisfy { PGPoolTests.isUnavailable($0) })
        #expect(pool.waitingCount == total - batch + 1)
        #expect(probes.allSatisfy { $0 == 1 }, "each waiting lookup asked once over the searches: \(Set(probes))")
        pool.stop()
    }

    /// Lookups dropped at the front of the FIFO leave its storage, not only its count: the head
    /// moves past them. (Before, they stayed as dead entries until the FIFO emptied, which
    /// during an outage, when nothing is served, is never: the storage grew with every lookup
    /// that expired or was dropped, and every search stepped over them.)
    @Test func lookupsDroppedAtTheHeadLeaveTheFIFOsStorage() throws {
        let (fake, pool, runner) = try Self.poolOnAServerThatNeverAnswers()
        defer { fake.close() }
        let batch = PGPool.abandonedScanBatch
        let total = PGPool.maxWaiting
        var gone = false
        var dropped = 0
        for i in 0..<total {
            pool.query("SELECT 1", parameters: [], abandoned: { i < batch && gone }) { _ in dropped += 1 }
        }
        #expect(pool.waitingCount == total)
        let storageBefore = pool.waitingStorageCount
        #expect(storageBefore == total)
        gone = true
        try Self.letTheScanIntervalPass(runner)
        var next: Outcome?
        pool.query("SELECT 1", parameters: []) { next = $0 }
        #expect(dropped == batch, "the search asks the first \(batch), all abandoned")
        #expect(next == nil, "queued in the room freed at the head")
        #expect(pool.waitingCount == total - batch + 1)
        #expect(pool.waitingStorageCount == total - batch + 1,
                "\(pool.waitingStorageCount) entries held for \(pool.waitingCount) waiting lookups")
        pool.stop()
    }

    /// Lookups that waited out the timeout leave the FIFO's storage as they expire (they
    /// expire in order, so at its front), not when the FIFO next empties. Timeout 3 s on one
    /// connection: A runs 0-2 s, B is served at 2 s and runs past the end of the check; the
    /// other lookups expire at 3 s while B runs, 2 s before B's own timeout.
    @Test func expiredLookupsLeaveTheFIFOsStorage() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        let loop = try EventLoop()
        let runner = PGConnectionTests.Runner(loop)
        let pool = PGPool(loop: loop, info: try ConnectInfo(cluster.conninfo), connections: 1, timeoutNanoseconds: 3_000_000_000)
        pool.start()
        var expired: [Outcome] = []
        pool.query("SELECT pg_sleep(2)", parameters: []) { _ in }
        pool.query("SELECT pg_sleep(10)", parameters: []) { _ in }
        for _ in 0..<100 { pool.query("SELECT 1", parameters: []) { expired.append($0) } }
        #expect(pool.waitingStorageCount == 102)
        #expect(try runner.run(seconds: 30, until: { expired.count == 100 }))
        #expect(expired.allSatisfy { outcome in
            guard case .failure(.unavailable(let why)) = outcome else { return false }
            return why.contains("within the timeout")
        }, "\(expired.first.map { "\($0)" } ?? "none")")
        #expect(pool.waitingCount == 0)
        #expect(pool.waitingStorageCount == 0, "\(pool.waitingStorageCount) dead entries kept")
        pool.stop()
    }

    /// The cursor wraps: after a search that reached the end, the next one starts again at the
    /// head and finds a lookup there whose client left since.
    @Test func theSearchWrapsToTheHeadAfterTheEnd() throws {
        let (fake, pool, runner) = try Self.poolOnAServerThatNeverAnswers()
        defer { fake.close() }
        let batch = PGPool.abandonedScanBatch
        let total = PGPool.maxWaiting
        var firstGone = false
        var dropped: [Int] = []
        for i in 0..<total {
            pool.query("SELECT 1", parameters: [], abandoned: { i == 0 && firstGone }) { _ in dropped.append(i) }
        }
        // Walk the whole FIFO once with nothing abandoned.
        for _ in 0..<((total + batch - 1) / batch) {
            try Self.letTheScanIntervalPass(runner)
            pool.query("SELECT 1", parameters: []) { _ in }
        }
        #expect(dropped.isEmpty)
        firstGone = true
        try Self.letTheScanIntervalPass(runner)
        var next: Outcome?
        pool.query("SELECT 1", parameters: []) { next = $0 }
        #expect(dropped == [0], "the next search started at the head again: \(dropped)")
        #expect(next == nil, "queued in the room freed at the head")
        pool.stop()
    }
    /// The cursor in the middle of the FIFO, with dead entries (dropped earlier) and lookups
    /// without `abandoned` on both sides of it: they cost no question, so the live lookups
    /// that can be asked are each asked once over ceil(live / batch) searches, and every one
    /// whose client left by then is dropped, before the cursor (after the wrap) or after it.
    @Test func deadEntriesOnBothSidesOfTheCursorCostNoQuestion() throws {
        let (fake, pool, runner) = try Self.poolOnAServerThatNeverAnswers()
        defer { fake.close() }
        let batch = PGPool.abandonedScanBatch
        let total = PGPool.maxWaiting
        #expect(total % batch == 0 && total / batch > 2, "the layout below needs whole batches")
        var gone = Set<Int>()
        var probes = [Int](repeating: 0, count: total)
        var asked = 0
        var dropped: [Int] = []
        for i in 0..<total {
            pool.query("SELECT 1", parameters: [], abandoned: {
                probes[i] += 1
                asked += 1
                return gone.contains(i)
            }) { _ in dropped.append(i) }
        }
        /// One search (a query on the full FIFO), then the FIFO filled up again with lookups
        /// that have no `abandoned` (steps for the search, never questions).
        func search() throws {
            try Self.letTheScanIntervalPass(runner)
            asked = 0
            pool.query("SELECT 1", parameters: []) { _ in }
            #expect(asked <= batch, "a search asked \(asked) lookups, more than the cap of \(batch)")
            while pool.waitingCount < total { pool.query("SELECT 1", parameters: []) { _ in } }
        }
        // Walk to the last batch; its odd entries leave: dropped, the cursor at the end.
        for _ in 0..<(total / batch - 1) { try search() }
        gone = Set(stride(from: total - batch + 1, to: total, by: 2))
        try search()
        #expect(dropped.sorted() == gone.sorted())
        // The next search passes the lookups without `abandoned` at the end, wraps, and asks
        // the first batch: its even entries leave. The cursor stops after it, in the middle.
        gone = Set(stride(from: 0, to: batch, by: 2))
        try search()
        #expect(dropped.count == batch, "both halves dropped: \(dropped.count)")
        // Dead entries before the cursor (the even ones of the first batch) and after it (the
        // odd ones of the last), lookups without `abandoned` after the end. Every seventh live
        // lookup's client leaves now, on both sides of the cursor.
        let dead = Set(dropped)
        let live = (0..<total).filter { !dead.contains($0) }
        #expect(live.count == total - batch)
        gone = Set(live.filter { $0 % 7 == 0 })
        #expect(gone.contains { $0 < batch } && gone.contains { $0 >= total - batch }, "on both sides")
        probes = [Int](repeating: 0, count: total)
        dropped = []
        let searches = (live.count + batch - 1) / batch
        for _ in 0..<searches { try search() }
        #expect(dropped.sorted() == gone.sorted(), "every abandoned lookup found within \(searches) searches")
        #expect(live.allSatisfy { probes[$0] == 1 }, "each live lookup asked once: \(Set(live.map { probes[$0] }))")
        #expect(dead.allSatisfy { probes[$0] == 0 }, "dead entries are never asked")
        pool.stop()
    }
}
