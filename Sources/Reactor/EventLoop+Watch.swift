import CShim
import SystemCalls

/// Readiness of a descriptor the loop does not own: a client library's socket (libpq,
/// issue 15) that the library itself reads and writes. The loop only reports readiness;
/// the owner calls into the library, which does the I/O.
///
/// Level-triggered like every other registration: an event repeats while the condition
/// holds, so the owner must either act on it or change `want`. EPOLLERR and EPOLLHUP
/// (reported by the kernel whatever the interest, epoll_ctl(2)) arrive as both readable and
/// writable, so the library meets the error on its next call. Call on the loop thread.
///
/// `cancel()` must come before the owner closes the descriptor (for libpq: before
/// `PQfinish`, or when `PQconnectPoll` switched to another socket): the loop's table is
/// indexed by descriptor number and the number is reused by the next accept.
public final class DescriptorWatch {
    /// The watched descriptor.
    public let descriptor: Int32
    private unowned let loop: EventLoop
    private let handler: Handler
    private var interest: UInt32
    /// `cancel()` was called: the descriptor is out of epoll and the handler never runs again.
    public private(set) var isCancelled = false

    /// Starts watching `fd` for what `read` and `write` ask. `label` names it in loop-lag
    /// warnings. `handler(readable, writable)` runs on the loop.
    /// - Throws: `SyscallError` from epoll_ctl(ADD) (EEXIST if fd is already registered).
    public init(loop: EventLoop, fd: Int32, read: Bool, write: Bool, label: String,
                handler: @escaping (_ readable: Bool, _ writable: Bool) -> Void) throws {
        descriptor = fd
        self.loop = loop
        interest = Self.events(read: read, write: write)
        self.handler = Handler(label: label, body: handler)
        try loop.register(fd: fd, events: interest, handler: self.handler)
    }

    /// Changes the interest; epoll_ctl(MOD) only when it changes.
    /// - Throws: `SyscallError` from epoll_ctl(MOD).
    public func want(read: Bool, write: Bool) throws {
        guard !isCancelled else { return }
        let events = Self.events(read: read, write: write)
        guard events != interest else { return }
        try loop.modify(fd: descriptor, events: events)
        interest = events
    }

    /// Stops watching; later events of the current batch are dropped. Idempotent.
    public func cancel() {
        guard !isCancelled else { return }
        isCancelled = true
        loop.unregister(fd: descriptor)
    }

    static func events(read: Bool, write: Bool) -> UInt32 {
        (read ? Epoll.input : 0) | (write ? Epoll.output : 0)
    }

    private final class Handler: Selectable {
        let label: String
        let body: (Bool, Bool) -> Void

        init(label: String, body: @escaping (Bool, Bool) -> Void) {
            self.label = label
            self.body = body
        }

        func handleEvent(_ events: UInt32) {
            let failed = events & (Epoll.error | Epoll.hangUp) != 0
            body(failed || events & Epoll.input != 0, failed || events & Epoll.output != 0)
        }

        var lagDescription: String { label }
    }
}
