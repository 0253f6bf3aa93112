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
}
