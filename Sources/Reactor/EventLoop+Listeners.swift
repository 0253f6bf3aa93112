import CShim
import Glibc
import Logging

/// Registration of a listener: accepts until EAGAIN (bounded), pauses on descriptor exhaustion.
final class ListenerHandler: Selectable {
    unowned let loop: EventLoop
    let listener: Listener
    let onAccept: (AcceptedSocket) -> Void
    var paused = false
    var removed = false
    var resumeTimer: TimerID?
    /// Times the listener paused on EMFILE/ENFILE (tests, metrics).
    var pauseCount = 0

    init(loop: EventLoop, listener: Listener, onAccept: @escaping (AcceptedSocket) -> Void) {
        self.loop = loop
        self.listener = listener
        self.onAccept = onAccept
    }

    var lagDescription: String { "listener \(listener.name ?? "-") (accepts)" }

    func handleEvent(_ events: UInt32) {
        for _ in 0..<Listener.maxAcceptsPerEvent {
            if removed || paused { return }
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
    private func pause(_ error: SyscallError) {
        paused = true
        pauseCount += 1
        loop.logger.warning("accept paused", metadata: ["listener": "\(listener.name ?? "-")", "error": "\(error)"])
        try? loop.modify(fd: listener.fd, events: 0)
        resumeTimer = loop.scheduleTimer(after: Listener.acceptBackoffNanoseconds) { [weak self] in
            guard let self, !self.removed else { return }
            self.paused = false
            self.resumeTimer = nil
            try? self.loop.modify(fd: self.listener.fd, events: CSHIM_EPOLLIN)
        }
    }
}

extension EventLoop {
    /// Starts accepting on listener; onAccept receives every new socket and owns it.
    public func addListener(_ listener: Listener, onAccept: @escaping (AcceptedSocket) -> Void) throws {
        let handler = ListenerHandler(loop: self, listener: listener, onAccept: onAccept)
        try register(fd: listener.fd, events: CSHIM_EPOLLIN, handler: handler)
        listenerHandlers[ObjectIdentifier(listener)] = handler
    }

    /// Stops accepting on listener (for drains); the listener itself stays open until closed.
    public func removeListener(_ listener: Listener) {
        guard let handler = listenerHandlers.removeValue(forKey: ObjectIdentifier(listener)) else { return }
        handler.removed = true
        if let timer = handler.resumeTimer { cancelTimer(timer) }
        unregister(fd: listener.fd)
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
