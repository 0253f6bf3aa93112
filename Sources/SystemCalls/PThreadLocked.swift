import Glibc

/// `State` behind a pthread mutex: what threads share (a worker pool's queue and results, the
/// process's size caches kept in memory); ARCHITECTURE.md convention 11.
///
/// Not `Synchronization.Mutex`: on Linux its contended path is a futex call inside the Swift
/// runtime, which ThreadSanitizer does not instrument, so TSan missed the hand-over from a
/// worker's unlock to the loop's lock and reported the accesses under the lock as races
/// (`make tsan`, a worker's `run` against `drainCompletions`' `takeCompleted`).
/// `pthread_mutex_lock` is intercepted by TSan and costs the same (glibc's mutex is a futex
/// too). `@unchecked Sendable`: `state` is touched only inside `withLock`.
public final class PThreadLocked<State>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var state: State

    /// A lock around `state`.
    public init(_ state: State) {
        self.state = state
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the state, holding the mutex; returns what `body` returns and rethrows
    /// what it throws (the mutex is released either way).
    public func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}
