import CShim
import Glibc
import Logging
import SystemCalls

/// Registration of a listener: accepts until EAGAIN (bounded), pauses on descriptor exhaustion.
final class ListenerHandler: Selectable {
    unowned let loop: EventLoop
    let listener: Listener
    let onAccept: (AcceptedSocket) -> Void
    /// Registered with EPOLLEXCLUSIVE (a listening socket shared by worker processes). The
    /// kernel refuses EPOLL_CTL_MOD on such a registration (EINVAL), so a pause takes the
    /// socket out of epoll (DEL) and the resume adds it again.
    let exclusive: Bool
    var paused = false
    var removed = false
    /// Held out of epoll by the owner (`EventLoop.holdAccepting`) until `releaseAccepting`;
    /// independent of an EMFILE pause, whose timer leaves a held listener out.
    var held = false
    var resumeTimer: TimerID?
    /// Times the listener paused on EMFILE/ENFILE (tests, metrics).
    var pauseCount = 0
    /// Consecutive failed attempts to put the listener back into epoll (0 when not failing).
    var failedResumes = 0

    init(loop: EventLoop, listener: Listener, exclusive: Bool, onAccept: @escaping (AcceptedSocket) -> Void) {
        self.loop = loop
        self.listener = listener
        self.exclusive = exclusive
        self.onAccept = onAccept
    }

    var events: UInt32 { exclusive ? Epoll.input | Epoll.exclusive : Epoll.input }

    var lagDescription: String { "listener \(listener.name ?? "-") (accepts)" }

    func handleEvent(_ events: UInt32) {
        for _ in 0..<Listener.maxAcceptsPerEvent {
            if removed || paused || held { return }
            do {
                guard let socket = try listener.acceptOne() else { return }
                onAccept(socket)
            } catch let error as SyscallError {
                switch error.errno {
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    pause(error)
                    return
                case ECONNABORTED, EPROTO, EPERM, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, ENETUNREACH:
                    continue  // the pending connection died before we took it (accept(2) NOTES)
                default:
                    loop.logger.error("accept failed", metadata: ["listener": "\(listener.name ?? "-")", "error": "\(error)"])
                    pause(error)
                    return
                }
            } catch {
                return
            }
        }
    }

    /// Takes the listener out of epoll for a while: level-triggered epoll would otherwise report
    /// the still-pending connection again at once and the loop would spin at 100% CPU.
    func pause(_ error: SyscallError) {
        paused = true
        pauseCount += 1
        loop.logger.warning("accept paused", metadata: ["listener": "\(listener.name ?? "-")", "error": "\(error)"])
        if exclusive || held {
            loop.unregister(fd: listener.fd)  // a no-op when held: it is out already
            scheduleResume()
            return
        }
        do {
            try loop.modify(fd: listener.fd, events: 0)
        } catch {
            // Still registered for EPOLLIN: until the resume below, events for it are dropped
            // by handleEvent (paused), at the cost of wake-ups; nothing is lost.
            loop.logger.error("cannot take the listener out of epoll while paused", metadata: [
                "listener": "\(listener.name ?? "-")", "error": "\(error)",
            ])
        }
        scheduleResume()
    }

    /// Puts the listener back into epoll after the backoff. epoll_ctl can fail here (ENOMEM;
    /// ENOENT if the descriptor left the epoll set): then the listener stays paused and the
    /// attempt is repeated every backoff, logged once with its cause when the failures begin
    /// and once when accepting resumes, so a listener never stays paused without a log line.
    private func scheduleResume() {
        resumeTimer = loop.scheduleTimer(after: Listener.acceptBackoffNanoseconds) { [weak self] in
            guard let self, !self.removed else { return }
            self.resumeTimer = nil
            if self.held {
                // The owner holds it out: `release` puts it back.
                self.paused = false
                return
            }
            do {
                if self.loop.isRegistered(fd: self.listener.fd) {
                    try self.loop.modify(fd: self.listener.fd, events: Epoll.input)
                } else {
                    // Out of epoll: exclusive (paused by DEL), or held and released meanwhile.
                    try self.loop.register(fd: self.listener.fd, events: self.events, handler: self)
                }
            } catch {
                self.failedResumes += 1
                if self.failedResumes == 1 {
                    self.loop.logger.error("cannot resume accepting; retrying", metadata: [
                        "listener": "\(self.listener.name ?? "-")", "error": "\(error)",
                        "retry.ms": "\(Listener.acceptBackoffNanoseconds / 1_000_000)",
                    ])
                }
                self.scheduleResume()
                return
            }
            if self.failedResumes > 0 {
                self.loop.logger.notice("accept resumed", metadata: [
                    "listener": "\(self.listener.name ?? "-")", "failed.attempts": "\(self.failedResumes)",
                ])
                self.failedResumes = 0
            }
            self.paused = false
        }
    }
}

extension ListenerHandler {
    /// Takes the listener out of epoll for the owner (see `EventLoop.holdAccepting`).
    func hold() {
        guard !held, !removed else { return }
        held = true
        loop.unregister(fd: listener.fd)  // paused or not: out of epoll until `release`
    }

    /// Puts a held listener back; a failure to do so is handled as an EMFILE-style pause
    /// (retried every backoff, logged).
    func release() {
        guard held, !removed else { return }
        held = false
        guard !paused else { return }  // the pause's timer puts it back
        do {
            try loop.register(fd: listener.fd, events: events, handler: self)
        } catch let error as SyscallError {
            pause(error)
        } catch {
            pause(SyscallError(errno: EINVAL, call: "epoll_ctl(ADD)"))
        }
    }
}

extension EventLoop {
    /// Stops accepting on every listener until `releaseAccepting()`: for an owner that
    /// cannot take more connections (a worker whose descriptors are spoken for), so that the
    /// kernel hands new connections to another process waiting on the same sockets.
    public func holdAccepting() {
        for handler in listenerHandlers.values { handler.hold() }
    }

    /// Accepts again after `holdAccepting()`.
    public func releaseAccepting() {
        for handler in listenerHandlers.values { handler.release() }
    }

    /// Whether the listeners are held by `holdAccepting()`.
    public var isHoldingAccepts: Bool { listenerHandlers.values.contains { $0.held } }

    /// Starts accepting on listener; onAccept receives every new socket and owns it.
    ///
    /// `exclusive`: for a listening socket that other processes' loops also wait on (the
    /// workers of one master): registered with EPOLLEXCLUSIVE, so a new connection wakes one
    /// of the waiting loops, not all of them (epoll_ctl(2)). The loop that wakes accepts; one
    /// that finds the queue already empty gets EAGAIN and goes back to waiting.
    public func addListener(_ listener: Listener, exclusive: Bool = false,
                            onAccept: @escaping (AcceptedSocket) -> Void) throws {
        let handler = ListenerHandler(loop: self, listener: listener, exclusive: exclusive, onAccept: onAccept)
        try register(fd: listener.fd, events: handler.events, handler: handler)
        listenerHandlers[ObjectIdentifier(listener)] = handler
    }

    /// Stops accepting on listener (for drains); the listener itself stays open until closed.
    public func removeListener(_ listener: Listener) {
        guard let handler = listenerHandlers.removeValue(forKey: ObjectIdentifier(listener)) else { return }
        handler.removed = true
        if let timer = handler.resumeTimer { cancelTimer(timer) }
        unregister(fd: listener.fd)  // a paused exclusive listener is out of epoll already: a no-op
    }

    /// Stops accepting on every listener (drain on SIGTERM).
    public func stopAccepting() {
        for handler in Array(listenerHandlers.values) { removeListener(handler.listener) }
    }

    /// How often listener paused on descriptor exhaustion.
    public func acceptPauseCount(_ listener: Listener) -> Int {
        listenerHandlers[ObjectIdentifier(listener)]?.pauseCount ?? 0
    }
}
