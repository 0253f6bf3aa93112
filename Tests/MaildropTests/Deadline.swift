import Glibc
import Synchronization

/// Runs `body` on a thread of its own and waits up to `seconds` for it to return. When it is
/// still running then, `unblock` is called (repeatedly, up to 5 s) until it returns and the
/// thread is joined: a "never blocks" test fails on code that blocks instead of hanging the
/// whole test run. Returns whether `body` finished within the deadline unaided.
func finishes(within seconds: Double, unblock: () -> Void, _ body: @escaping @Sendable () -> Void) -> Bool {
    final class Context: Sendable {
        let body: @Sendable () -> Void
        let done = Atomic<Bool>(false)
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let context = Context(body)
    var thread = pthread_t()
    let arg = Unmanaged.passRetained(context).toOpaque()
    let rc = pthread_create(&thread, nil, { arg in
        guard let arg else { return nil }
        let c = Unmanaged<Context>.fromOpaque(arg).takeRetainedValue()
        c.body()
        c.done.store(true, ordering: .releasing)
        return nil
    }, arg)
    guard rc == 0 else {
        Unmanaged<Context>.fromOpaque(arg).release()
        return false
    }
    let deadline = monotonicSeconds() + seconds
    while !context.done.load(ordering: .acquiring) && monotonicSeconds() < deadline { usleep(1_000) }
    let finished = context.done.load(ordering: .acquiring)
    let giveUp = monotonicSeconds() + 5
    while !context.done.load(ordering: .acquiring) && monotonicSeconds() < giveUp {
        unblock()
        usleep(10_000)
    }
    if context.done.load(ordering: .acquiring) { pthread_join(thread, nil) } else { pthread_detach(thread) }
    return finished
}

/// Makes a reader blocked in `open` of the FIFO at `path` return (it sees end of file).
func releaseFIFOReader(_ path: String) {
    let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
    if fd >= 0 { close(fd) }
}

/// A box for a result computed on another thread; read only after `finishes` returned.
final class Outcome<T>: @unchecked Sendable {
    var value: T?
}
