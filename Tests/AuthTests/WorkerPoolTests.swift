import Testing
import Glibc
import Synchronization
@testable import Auth

/// Polls `condition` until it holds or `seconds` pass; no fixed sleeps.
func waitUntil(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = FailurePenalty.monotonicNow() + .milliseconds(Int(seconds * 1000))
    while !condition() {
        if FailurePenalty.monotonicNow() > deadline { return false }
        sched_yield()
    }
    return true
}

@Suite struct WorkerPoolTests {
    @Test func manyJobsCompleteOnlyInsideDrainAndNotify() {
        let notified = Atomic<Int>(0)
        let ran = Atomic<Int>(0)
        let pool = WorkerPool(threads: 3, notify: { notified.add(1, ordering: .relaxed) })
        defer { pool.shutdown() }
        #expect(pool.threadCount == 3)
        var results: [Int] = []
        let n = 200
        for i in 0..<n {
            let s = pool.submit({ ran.add(1, ordering: .relaxed); return i * 2 }, completion: { results.append($0) })
            if case .queued = s {} else { Issue.record("job \(i) not queued: \(s)") }
        }
        #expect(waitUntil { ran.load(ordering: .relaxed) == n })
        #expect(waitUntil { pool.completedAwaitingDrain == n })
        // Jobs are done, yet no completion ran: they run only in drainCompletions.
        #expect(results.isEmpty)
        #expect(notified.load(ordering: .relaxed) >= 1)
        #expect(pool.drainCompletions() == n)
        #expect(results.sorted() == (0..<n).map { $0 * 2 })
        #expect(pool.outstanding == 0)
        #expect(pool.drainCompletions() == 0)
    }

    @Test func fullQueueAnswersOverloadedThenRecovers() {
        let gate = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)
        let pool = WorkerPool(threads: 1, maxQueuedJobs: 2, notify: {})
        defer { pool.shutdown() }
        var done = 0
        pool.submit({ started.store(true, ordering: .releasing)
                      while !gate.load(ordering: .acquiring) { sched_yield() }
                      return 0 }, completion: { _ in done += 1 })
        #expect(waitUntil { started.load(ordering: .acquiring) })
        #expect(pool.submit({ 1 }, completion: { _ in done += 1 }) != .overloaded)
        #expect(pool.submit({ 2 }, completion: { _ in done += 1 }) != .overloaded)
        #expect(pool.submit({ 3 }, completion: { _ in done += 1 }) == .overloaded)
        gate.store(true, ordering: .releasing)
        #expect(waitUntil { pool.drainCompletions(); return done == 3 })
        #expect(pool.outstanding == 0)
        #expect(pool.submit({ 4 }, completion: { _ in done += 1 }) != .overloaded)
    }

    /// A client that closes its connection takes its queued hash with it: the job never runs,
    /// its completion never runs, and its queue slot is free again at once.
    @Test func cancelRemovesAQueuedJobButNotARunningOne() {
        let gate = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)
        let ran = Atomic<Int>(0)
        let pool = WorkerPool(threads: 1, maxQueuedJobs: 2, notify: {})
        defer { pool.shutdown() }
        var done: [Int] = []
        guard case .queued(let running) = pool.submit({ () -> Int in
            started.store(true, ordering: .releasing)
            while !gate.load(ordering: .acquiring) { sched_yield() }
            return 0
        }, completion: { done.append($0) }) else { Issue.record("not queued"); return }
        #expect(waitUntil { started.load(ordering: .acquiring) })
        guard case .queued(let first) = pool.submit({ ran.add(1, ordering: .relaxed); return 1 }, completion: { done.append($0) }),
              case .queued = pool.submit({ ran.add(10, ordering: .relaxed); return 2 }, completion: { done.append($0) })
        else { Issue.record("not queued"); return }
        #expect(pool.queuedJobs == 2)
        #expect(pool.submit({ 3 }, completion: { done.append($0) }) == .overloaded)
        // Cancelling a queued job frees its slot at once.
        #expect(pool.cancel(first))
        #expect(!pool.cancel(first))  // only once
        #expect(pool.queuedJobs == 1)
        #expect(pool.submit({ 4 }, completion: { done.append($0) }) != .overloaded)
        // The running job cannot be stopped: cancel says so and its completion still runs.
        #expect(!pool.cancel(running))
        gate.store(true, ordering: .releasing)
        #expect(waitUntil { pool.drainCompletions(); return done.count == 3 })
        #expect(done.sorted() == [0, 2, 4])
        #expect(ran.load(ordering: .relaxed) == 10)  // the cancelled job never ran
        #expect(pool.outstanding == 0 && pool.queuedJobs == 0)
    }

    /// A flooding address's extra jobs wait in the `.later` lane: a job in the `.first` lane,
    /// submitted after them, runs before them.
    @Test func firstLaneJobsRunBeforeLaterOnes() {
        let gate = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)
        let order = Mutex<[Int]>([])
        let pool = WorkerPool(threads: 1, notify: {})
        defer { pool.shutdown() }
        var done = 0
        pool.submit({ () -> Int in
            started.store(true, ordering: .releasing)
            while !gate.load(ordering: .acquiring) { sched_yield() }
            return 0
        }, completion: { _ in done += 1 })
        #expect(waitUntil { started.load(ordering: .acquiring) })
        for i in 1...3 {
            pool.submit({ order.withLock { $0.append(i) }; return i }, lane: .later, completion: { _ in done += 1 })
        }
        pool.submit({ order.withLock { $0.append(9) }; return 9 }, lane: .first, completion: { _ in done += 1 })
        gate.store(true, ordering: .releasing)
        #expect(waitUntil { pool.drainCompletions(); return done == 5 })
        #expect(order.withLock { $0 } == [9, 1, 2, 3])
    }

    @Test func shutdownJoinsAndRefusesNewWork() {
        let pool = WorkerPool(threads: 2, notify: {})
        pool.shutdown()
        pool.shutdown()
        #expect(pool.submit({ 1 }, completion: { _ in }) == .shutDown)
    }

    @Test func verificationsRunInParallelThroughThePool() throws {
        let (file, _) = PasswdFile.parse(Array("""
        a:{SHA512-CRYPT}$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.
        """.utf8), path: "t")
        let pool = WorkerPool(threads: 2, notify: {})
        defer { pool.shutdown() }
        var outcomes: [Bool] = []
        for i in 0..<8 {
            let pw = Array((i % 2 == 0 ? "secret" : "wrong").utf8)
            pool.submit({ file.verifyOrDummy(user: "a", password: pw) != nil }, completion: { outcomes.append($0) })
        }
        #expect(waitUntil { pool.drainCompletions(); return outcomes.count == 8 })
        #expect(outcomes.filter { $0 }.count == 4)
    }

    /// The loop drains while workers finish: the pool's lock is contended on every job (four
    /// workers appending results, this thread taking them, submitting more in between). Every
    /// job's completion runs exactly once. Under `make tsan` this is also the check that the
    /// hand-over through the lock is seen: with `Synchronization.Mutex` (a futex in the
    /// uninstrumented runtime when contended) TSan reported `takeCompleted` against a worker's
    /// `run` as a Swift access race.
    @Test func drainingWhileWorkersFinishRunsEveryCompletionOnce() {
        let pool = WorkerPool(threads: 4, maxQueuedJobs: 64, notify: {})
        defer { pool.shutdown() }
        let total = 2_000
        var submitted = 0
        var seen = [Int](repeating: 0, count: total)
        let finished = waitUntil(seconds: 60) {
            while submitted < total {
                let value = submitted
                guard case .queued = pool.submit({ value }, completion: { seen[$0] += 1 }) else { break }
                submitted += 1
            }
            pool.drainCompletions()
            return submitted == total && pool.outstanding == 0
        }
        #expect(finished, "\(submitted) submitted, \(pool.outstanding) outstanding")
        #expect(seen.allSatisfy { $0 == 1 })
    }
}
