import Glibc
import Synchronization

/// A few pthreads that run password verifications off the loop thread.
///
/// Owned and used by the loop thread only (so not `Sendable`): `submit` and
/// `drainCompletions` are called there. Jobs are `@Sendable` and run on the
/// workers; their results cross back through a `Mutex`-protected queue; the
/// non-Sendable completions never leave this loop-side table and run only
/// inside `drainCompletions`. `notify` is called from a worker when the
/// completed queue goes from empty to non-empty (the glue passes an eventfd
/// waker's `wake()`; the eventfd coalesces, so one call per batch suffices).
public final class WorkerPool {
    /// Jobs waiting for a thread; beyond it `submit` answers `.overloaded`
    /// (the glue replies `-ERR [SYS/TEMP]`) rather than queueing unbounded work.
    public static let defaultMaxQueuedJobs = 256

    public struct JobID: Hashable, Sendable {
        public let rawValue: UInt64
    }

    public enum Submission: Equatable, Sendable {
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

    public var threadCount: Int { threads.count }

    /// Jobs submitted whose completion has not run yet.
    public var outstanding: Int { completions.count }

    /// Queues `job` for a worker; `completion` runs later on this thread inside
    /// `drainCompletions`. Never blocks.
    @discardableResult
    public func submit<R: Sendable>(_ job: @escaping @Sendable () -> R,
                                    completion: @escaping (R) -> Void) -> Submission {
        guard !isShutDown, !threads.isEmpty else { return .shutDown }
        let id = nextID
        guard core.enqueue(id: id, work: { job() }) else { return .overloaded }
        nextID += 1
        completions[id] = { result in
            // The job produced an R, so the cast always succeeds.
            if let r = result as? R { completion(r) }
        }
        return .queued(JobID(rawValue: id))
    }

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
/// a `Mutex`, or a thread-safe semaphore.
final class WorkerPoolCore: Sendable {
    typealias Work = @Sendable () -> any Sendable

    struct State {
        var queue: [(id: UInt64, work: Work)] = []
        var head = 0
        var completed: [(UInt64, any Sendable)] = []
        var stopping = false

        var queuedCount: Int { queue.count - head }
    }

    let state = Mutex(State())
    let available = CountingSemaphore()
    let maxQueued: Int
    let notify: @Sendable () -> Void

    init(maxQueued: Int, notify: @escaping @Sendable () -> Void) {
        self.maxQueued = maxQueued
        self.notify = notify
    }

    func enqueue(id: UInt64, work: @escaping Work) -> Bool {
        let ok = state.withLock { s in
            guard !s.stopping, s.queuedCount < maxQueued else { return false }
            s.queue.append((id, work))
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
            let next: (id: UInt64, work: Work)? = state.withLock { s in
                guard !s.stopping, s.head < s.queue.count else { return nil }
                let item = s.queue[s.head]
                s.head += 1
                // Compact lazily so the array does not grow with every job ever run.
                if s.head > 64 && s.head * 2 > s.queue.count {
                    s.queue.removeFirst(s.head)
                    s.head = 0
                }
                return item
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
        // EINTR: a signal landed on this thread; wait again.
        while sem_wait(sem) != 0 && errno == EINTR {}
    }
}

extension WorkerPool {
    /// Finished jobs whose completions wait for `drainCompletions` (metrics, tests).
    public var completedAwaitingDrain: Int { core.completedCount }
}
