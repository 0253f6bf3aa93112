import Glibc
import Logging
import Reactor

/// A reason pop3d refuses to start, worded for the operator.
public struct LifecycleError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Live numbers for systemd's STATUS= line.
public struct LifecycleCounts: Equatable, Sendable {
    public var connections: Int
    public var loggedIn: Int
    public var served: Int
    public init(connections: Int, loggedIn: Int, served: Int) {
        self.connections = connections
        self.loggedIn = loggedIn
        self.served = served
    }
}

/// The process lifecycle under systemd (or by hand), independent of the protocol handler:
/// listeners, READY=1, STATUS=, WATCHDOG=1, SIGHUP reload, SIGTERM/SIGINT drain.
/// Every notify is a no-op outside systemd (sd_notify without NOTIFY_SOCKET).
///
/// The session layer plugs in through `Hooks`: `accept` receives every socket, `drain` asks
/// sessions to end (idle ones now, busy ones when their command is done) and the session
/// layer calls `sessionsDrained()` when none is left.
public final class ServerLifecycle {
    /// STATUS= is sent at most this often, and only when the counts changed.
    public static let statusIntervalNanoseconds: UInt64 = 1_000_000_000
    /// Default time busy sessions get to finish after SIGTERM before they are cut off.
    public static let defaultShutdownTimeoutSeconds = 30.0

    public struct Hooks {
        /// A new client socket; `listener.name` tells "pop3s" (implicit TLS) from plain.
        public var accept: (AcceptedSocket, Listener) -> Void
        public var counts: () -> LifecycleCounts
        /// SIGHUP: re-read configuration, user database, certificates. Runs between RELOADING=1 and READY=1.
        public var reload: () -> Void
        /// SIGTERM: listeners are already closed; end idle sessions, let busy ones finish.
        public var drain: () -> Void
        /// The shutdown timeout passed: end whatever is left.
        public var closeAll: () -> Void

        public init(accept: @escaping (AcceptedSocket, Listener) -> Void,
                    counts: @escaping () -> LifecycleCounts,
                    reload: @escaping () -> Void,
                    drain: @escaping () -> Void,
                    closeAll: @escaping () -> Void) {
            self.accept = accept
            self.counts = counts
            self.reload = reload
            self.drain = drain
            self.closeAll = closeAll
        }
    }

    public let loop: EventLoop
    public let listeners: [Listener]
    public var logger: Logger
    let hooks: Hooks
    let shutdownTimeout: UInt64
    private var lastStatus: LifecycleCounts?
    private var statusTimer: TimerID?
    private var watchdogTimer: TimerID?
    private var shutdownTimer: TimerID?
    public private(set) var isDraining = false
    private var finished = false

    public init(loop: EventLoop, listeners: [Listener], shutdownTimeoutSeconds: Double = ServerLifecycle.defaultShutdownTimeoutSeconds,
                logger: Logger, hooks: Hooks) {
        self.loop = loop
        self.listeners = listeners
        self.logger = logger
        self.hooks = hooks
        let seconds = shutdownTimeoutSeconds.isFinite ? max(0, min(shutdownTimeoutSeconds, 86_400)) : Self.defaultShutdownTimeoutSeconds
        self.shutdownTimeout = UInt64(seconds * 1e9)
    }

    /// Listeners from socket activation when systemd passed any, else bound from `addresses`.
    /// fd name "pop3" or none = plain POP3; "pop3s" = implicit TLS, refused unless `implicitTLSAvailable`.
    public static func makeListeners(binding addresses: [SocketAddress], reusePort: Bool = false,
                                     implicitTLSAvailable: Bool = false, logger: Logger) throws -> [Listener] {
        let inherited = Systemd.listenFDs()
        if !inherited.isEmpty {
            var result: [Listener] = []
            for (fd, name) in inherited {
                switch name {
                case nil, "pop3":
                    break
                case "pop3s":
                    guard implicitTLSAvailable else {
                        throw LifecycleError("socket-activated fd \(fd) is named 'pop3s' (implicit TLS, RFC 8314) but TLS is not configured in this pop3d; refusing to start")
                    }
                default:
                    throw LifecycleError("socket-activated fd \(fd) has unknown FileDescriptorName '\(name ?? "")' (expected 'pop3' or 'pop3s')")
                }
                guard Systemd.isListeningInetStream(fd) else {
                    throw LifecycleError("socket-activated fd \(fd) is not a listening TCP socket")
                }
                let listener = try Listener(inheritedFD: fd, name: name ?? "pop3")
                logger.info("listening (socket activation)", metadata: [
                    "fd": "\(fd)", "name": "\(name ?? "unnamed")", "address": "\(listener.address?.description ?? "?")",
                ])
                result.append(listener)
            }
            if !addresses.isEmpty {
                logger.notice("--listen ignored: systemd passed \(inherited.count) socket(s)")
            }
            return result
        }
        guard !addresses.isEmpty else { throw LifecycleError("no listeners: give --listen HOST:PORT or start through socket activation") }
        return try addresses.map { address in
            do {
                let listener = try Listener(bind: address, name: "pop3", reusePort: reusePort)
                logger.info("listening", metadata: ["address": "\(listener.address?.description ?? address.description)"])
                return listener
            } catch {
                throw LifecycleError("cannot listen on \(address): \(error)")
            }
        }
    }

    /// Registers listeners and signals, then tells systemd READY=1. Call before `run()`, before
    /// any other thread is started (signals are blocked in the calling thread and inherited).
    public func start() throws {
        try loop.onSignals([SIGTERM, SIGINT, SIGHUP]) { [weak self] signal in
            self?.handleSignal(signal)
        }
        // A client that disconnects while we write must not kill the process.
        Glibc.signal(SIGPIPE, SIG_IGN)
        for listener in listeners {
            try loop.addListener(listener) { [weak self] socket in
                self?.hooks.accept(socket, listener)
            }
        }
        Systemd.notify("READY=1")
        sendStatus(force: true)
        scheduleStatus()
        if let interval = Systemd.watchdogInterval() {
            logger.info("watchdog on", metadata: ["interval_ms": "\(interval / 1_000_000)"])
            scheduleWatchdog(every: max(interval / 2, 1_000_000))
        }
        logger.info("ready", metadata: ["listeners": "\(listeners.count)"])
    }

    /// Runs the loop until the drain is over.
    public func run() throws {
        try loop.run()
    }

    /// The session layer says no session is left during a drain.
    public func sessionsDrained() {
        guard isDraining else { return }
        finish()
    }

    // MARK: notify

    private func scheduleStatus() {
        statusTimer = loop.scheduleTimer(after: Self.statusIntervalNanoseconds) { [weak self] in
            guard let self else { return }
            self.sendStatus(force: false)
            self.scheduleStatus()
        }
    }

    private func sendStatus(force: Bool) {
        let counts = hooks.counts()
        guard force || counts != lastStatus else { return }
        lastStatus = counts
        let phase = isDraining ? "draining; " : ""
        Systemd.notify("STATUS=\(phase)\(counts.connections) connections, \(counts.loggedIn) logged in, \(counts.served) sessions served")
    }

    private func scheduleWatchdog(every interval: UInt64) {
        // Sent from a loop timer, so a loop stuck in one callback stops the pings and systemd restarts us.
        watchdogTimer = loop.scheduleTimer(after: interval) { [weak self] in
            Systemd.notify("WATCHDOG=1")
            self?.scheduleWatchdog(every: interval)
        }
    }

    // MARK: signals

    private func handleSignal(_ signal: Int32) {
        switch signal {
        case SIGHUP:
            reload()
        case SIGTERM, SIGINT:
            beginDrain(signal: signal)
        default:
            break
        }
    }

    private func reload() {
        guard !isDraining else { return }
        // systemd.service(5) Type=notify-reload: RELOADING=1 carries the monotonic time.
        Systemd.notify("RELOADING=1\nMONOTONIC_USEC=\(Systemd.monotonicMicroseconds())")
        logger.info("reloading (SIGHUP)")
        hooks.reload()
        Systemd.notify("READY=1")
        sendStatus(force: true)
        logger.info("reloaded")
    }

    private func beginDrain(signal: Int32) {
        guard !isDraining else {
            logger.info("already draining", metadata: ["signal": "\(signal)"])
            return
        }
        isDraining = true
        Systemd.notify("STOPPING=1")
        logger.info("draining", metadata: ["signal": "\(signal == SIGTERM ? "SIGTERM" : "SIGINT")",
                                           "timeout_s": "\(shutdownTimeout / 1_000_000_000)"])
        loop.stopAccepting()
        for listener in listeners { listener.close() }
        sendStatus(force: true)
        shutdownTimer = loop.scheduleTimer(after: shutdownTimeout) { [weak self] in
            guard let self else { return }
            self.logger.warning("shutdown timeout: closing remaining sessions",
                                metadata: ["connections": "\(self.hooks.counts().connections)"])
            self.hooks.closeAll()
            self.finish()
        }
        hooks.drain()
        if hooks.counts().connections == 0 { finish() }
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        if let timer = shutdownTimer { loop.cancelTimer(timer) }
        if let timer = statusTimer { loop.cancelTimer(timer) }
        if let timer = watchdogTimer { loop.cancelTimer(timer) }
        shutdownTimer = nil
        statusTimer = nil
        watchdogTimer = nil
        logger.info("stopped", metadata: ["sessions_served": "\(hooks.counts().served)"])
        loop.stop()
    }
}
