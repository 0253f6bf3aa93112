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
}
