import Glibc
import SystemCalls

/// A few pthreads that run password verifications off the loop thread.
///
/// Owned and used by the loop thread only (so not `Sendable`): `submit` and
/// `drainCompletions` are called there. Jobs are `@Sendable` and run on the
/// workers; their results cross back through a lock-protected queue (`PThreadLocked`); the
/// non-Sendable completions never leave this loop-side table and run only
/// inside `drainCompletions`. `notify` is called from a worker when the
/// completed queue goes from empty to non-empty (the glue passes an eventfd
/// waker's `wake()`; the eventfd coalesces, so one call per batch suffices).
public final class WorkerPool {
    /// Jobs waiting for a thread; beyond it `submit` answers `.overloaded`
    /// (the glue replies `-ERR [SYS/TEMP]`) rather than queueing unbounded work.
    public static let defaultMaxQueuedJobs = 256

    /// A submitted job's number, for logs and tests.
    public struct JobID: Hashable, Sendable {
        /// Numbers count up from 1 per pool.
        public let rawValue: UInt64
    }

    /// Which queue a job waits in. Workers take every `.first` job before any `.later` one:
    /// the glue queues a client address's first outstanding hash as `.first` and any further
    /// one as `.later`, so a real user's single login never waits behind the queue of an
    /// address that floods (at most one of the flooder's jobs per worker runs ahead of it).
    public enum Lane: Int, Sendable {
        /// A client address's first outstanding job.
        case first = 0
        /// Any further job of the same address.
        case later = 1
    }

    /// What `submit` did with a job.
    public enum Submission: Equatable, Sendable {
        /// Queued under this id.
        case queued(JobID)
        /// `maxQueuedJobs` jobs are already waiting.
        case overloaded
        /// `shutdown()` was called.
        case shutDown
    }

    private let core: WorkerPoolCore
    private var completions: [UInt64: (any Sendable) -> Void] = [:]
    private var nextID: UInt64 = 1
    private var threads: [pthread_t] = []
    private var isShutDown = false

    /// Starts `threads` workers (at least one). A thread that cannot be
    /// created is skipped; `threadCount` tells how many run.
    public init(threads: Int, maxQueuedJobs: Int = WorkerPool.defaultMaxQueuedJobs,
                notify: @escaping @Sendable () -> Void) {
        core = WorkerPoolCore(maxQueued: max(1, maxQueuedJobs), notify: notify)
        for _ in 0..<max(1, threads) {
            let context = Unmanaged.passRetained(core).toOpaque()
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { arg in
                guard let arg else { return nil }
                let core = Unmanaged<WorkerPoolCore>.fromOpaque(arg).takeRetainedValue()
                core.run()
                return nil
            }, context)
            if rc == 0 {
                self.threads.append(tid)
            } else {
                Unmanaged<WorkerPoolCore>.fromOpaque(context).release()
            }
        }
    }

    deinit { shutdown() }

    /// Worker threads running (`threads` asked, less any pthread_create(3) failed).
    public var threadCount: Int { threads.count }

    /// Jobs submitted whose completion has not run yet.
    public var outstanding: Int { completions.count }

    /// Queues `job` for a worker; `completion` runs later on this thread inside
    /// `drainCompletions`. Never blocks.
    @discardableResult
    public func submit<R: Sendable>(_ job: @escaping @Sendable () -> R, lane: Lane = .first,
                                    completion: @escaping (R) -> Void) -> Submission {
        guard !isShutDown, !threads.isEmpty else { return .shutDown }
        let id = nextID
        guard core.enqueue(id: id, lane: lane, work: { job() }) else { return .overloaded }
        nextID += 1
        completions[id] = { result in
            // The job produced an R, so the cast always succeeds.
            if let r = result as? R { completion(r) }
        }
        return .queued(JobID(rawValue: id))
    }

    /// Removes a job that no worker has started yet: it never runs and its completion never
    /// runs; answers true. A job already running (or finished, its completion waiting for
    /// `drainCompletions`) cannot be stopped: answers false, and its completion still runs,
    /// so it must cope with a client that has gone. The glue calls this when a client closes
    /// its connection, so abandoned logins stop costing hashes. O(1).
    @discardableResult
    public func cancel(_ job: JobID) -> Bool {
        guard completions[job.rawValue] != nil, core.cancel(id: job.rawValue) else { return false }
        completions.removeValue(forKey: job.rawValue)
        return true
    }

    /// Jobs queued and not yet started by a worker (metrics, tests).
    public var queuedJobs: Int { core.queuedCount }

    /// Runs the completions of every finished job, in finishing order; returns
    /// how many ran. Call it from the waker's callback on the loop thread.
    @discardableResult
    public func drainCompletions() -> Int {
        let done = core.takeCompleted()
        var ran = 0
        for (id, result) in done {
            guard let completion = completions.removeValue(forKey: id) else { continue }
            completion(result)
            ran += 1
        }
        return ran
    }

    /// Stops the workers after their current job and joins them. Queued jobs
    /// are dropped and their completions never run. Idempotent.
    public func shutdown() {
        guard !isShutDown else { return }
        isShutDown = true
        core.stop(threads: threads.count)
        for t in threads { pthread_join(t, nil) }
        threads.removeAll()
        completions.removeAll()
    }
}

/// The part of the pool the worker threads share: every field is immutable,
/// a lock (`PThreadLocked`), or a thread-safe semaphore.
final class WorkerPoolCore: Sendable {
    typealias Work = @Sendable () -> any Sendable

    /// A FIFO of submitted jobs; `head` is the next one to look at. A cancelled job stays in
    /// it until a worker passes it by (cancelling is O(1), not a removal mid-array).
    struct Queue {
        var items: [(id: UInt64, work: Work)] = []
        var head = 0

        /// The oldest job still in `waiting` (which it leaves), skipping cancelled ones.
        mutating func pop(waiting: inout Set<UInt64>) -> (id: UInt64, work: Work)? {
            var found: (id: UInt64, work: Work)? = nil
            while found == nil && head < items.count {
                let item = items[head]
                head += 1
                if waiting.remove(item.id) != nil { found = item }
            }
            // Compact lazily so the array does not grow with every job ever run.
            if head == items.count {
                items.removeAll(keepingCapacity: items.count <= 1024)
                head = 0
            } else if head > 64 && head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            return found
        }
    }

    struct State {
        /// One queue per `WorkerPool.Lane`, taken in lane order.
        var lanes = [Queue(), Queue()]
        /// Ids in the lanes that are neither started nor cancelled.
        var waiting: Set<UInt64> = []
        var completed: [(UInt64, any Sendable)] = []
        var stopping = false

        var queuedCount: Int { waiting.count }
    }

    let state = PThreadLocked(State())
    let available = CountingSemaphore()
    let maxQueued: Int
    let notify: @Sendable () -> Void

    init(maxQueued: Int, notify: @escaping @Sendable () -> Void) {
        self.maxQueued = maxQueued
        self.notify = notify
    }

    func enqueue(id: UInt64, lane: WorkerPool.Lane, work: @escaping Work) -> Bool {
        let ok = state.withLock { s in
            guard !s.stopping, s.queuedCount < maxQueued else { return false }
            s.lanes[lane.rawValue].items.append((id, work))
            s.waiting.insert(id)
            return true
        }
        if ok { available.post() }
        return ok
    }

    func takeCompleted() -> [(UInt64, any Sendable)] {
        state.withLock { s in
            let done = s.completed
            s.completed.removeAll(keepingCapacity: true)
            return done
        }
    }

    /// True when `id` was waiting and is now cancelled (no worker will run it).
    func cancel(id: UInt64) -> Bool {
        state.withLock { $0.waiting.remove(id) != nil }
    }

    var queuedCount: Int { state.withLock { $0.queuedCount } }

    /// Completed results not yet taken by `drainCompletions` (for tests and metrics).
    var completedCount: Int { state.withLock { $0.completed.count } }

    func stop(threads: Int) {
        state.withLock { $0.stopping = true }
        for _ in 0..<threads { available.post() }
    }

    /// A worker's life: one semaphore unit per queued job or per stop request.
    func run() {
        while true {
            available.wait()
            // A cancelled job's semaphore unit may wake a worker for a later job, whose own
            // unit then finds the queue empty: a spurious wake-up, handled by `continue`.
            let next: (id: UInt64, work: Work)? = state.withLock { s in
                guard !s.stopping else { return nil }
                for i in s.lanes.indices {
                    if let found = s.lanes[i].pop(waiting: &s.waiting) { return found }
                }
                return nil
            }
            guard let next else {
                if state.withLock({ $0.stopping }) { return }
                continue
            }
            let result = next.work()
            let wasEmpty = state.withLock { s in
                let wasEmpty = s.completed.isEmpty
                s.completed.append((next.id, result))
                return wasEmpty
            }
            if wasEmpty { notify() }
        }
    }
}

/// POSIX unnamed semaphore: `sem_post`/`sem_wait` are thread-safe by
/// definition, which is why this wrapper is `@unchecked Sendable`.
final class CountingSemaphore: @unchecked Sendable {
    private let sem: UnsafeMutablePointer<sem_t>

    init() {
        sem = .allocate(capacity: 1)
        sem_init(sem, 0, 0)
    }

    deinit {
        sem_destroy(sem)
        sem.deallocate()
    }

    func post() { sem_post(sem) }

    func wait() {
        // EINTR (a signal landed on this thread) is waited again by `syscallBlocking`; the only
        // other failure, EINVAL, would be a semaphore never initialised, which `init` rules out.
        _ = try? syscallBlocking("sem_wait") { sem_wait(sem) }
    }
}

extension WorkerPool {
    /// Finished jobs whose completions wait for `drainCompletions` (metrics, tests).
    public var completedAwaitingDrain: Int { core.completedCount }
}
