import CShim
import Glibc
import SystemCalls

extension EventLoop {
    /// Delivers the signals as loop events through a signalfd. Call on the loop thread: the
    /// signals are blocked there, and a handler forwards them to it from any other thread that
    /// takes a process-directed signal (threads that existed before, such as Swift concurrency's
    /// pool when `main` is async), so they never hit the default action. One loop per process
    /// should own a given signal.
    public func onSignals(_ signals: [Int32], _ handler: @escaping (Int32) -> Void) throws {
        let fd = try signals.withUnsafeBufferPointer { buffer in
            try syscallBlocking("signalfd") { cshim_signalfd_create(buffer.baseAddress, Int32(buffer.count)) }
        }
        wakers.append(fd)  // closed with the loop
        try register(fd: fd, events: Epoll.input, handler: SignalHandler(fd: fd, handler: handler))
    }
}

private final class SignalHandler: Selectable {
    let fd: Int32
    let handler: (Int32) -> Void
    /// Signals read per readiness event; the rest stay queued (level-triggered) for the next one.
    static let maxSignalsPerEvent = 16

    init(fd: Int32, handler: @escaping (Int32) -> Void) {
        self.fd = fd
        self.handler = handler
    }

    func handleEvent(_ events: UInt32) {
        for _ in 0..<Self.maxSignalsPerEvent {
            let signo = cshim_signalfd_read(fd)
            if signo <= 0 { return }
            handler(signo)
        }
    }
}

/// Wakes a loop from any thread; the body given to `makeWaker` then runs on the loop.
/// Several wake() calls before the loop runs coalesce into one run of the body (eventfd counter).
public final class Waker: Sendable {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// The eventfd (close-on-exec). Another process that inherits it (a worker spawned with
    /// FD_CLOEXEC cleared) wakes this loop by writing an 8-byte 1 to it, as `wake()` does.
    public var descriptor: Int32 { fd }

    /// Adds 1 to the eventfd counter (an 8-octet write(2)); callable from any thread, never blocks.
    public func wake() {
        var one: UInt64 = 1
        // EAGAIN means the counter is saturated: the loop will run the body anyway.
        _ = withUnsafeBytes(of: &one) { Glibc.write(fd, $0.baseAddress, 8) }
    }
}

extension EventLoop {
    /// Creates an eventfd-backed waker. The eventfd lives as long as the loop.
    public func makeWaker(_ body: @escaping () -> Void) throws -> Waker {
        let fd = try syscallBlocking("eventfd") { KernelFD.event() }
        wakers.append(fd)
        try register(fd: fd, events: Epoll.input, handler: WakerHandler(fd: fd, body: body))
        return Waker(fd: fd)
    }
}

private final class WakerHandler: Selectable {
    let fd: Int32
    let body: () -> Void

    init(fd: Int32, body: @escaping () -> Void) {
        self.fd = fd
        self.body = body
    }

    func handleEvent(_ events: UInt32) {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { Glibc.read(fd, $0.baseAddress, 8) }
        body()
    }
}
