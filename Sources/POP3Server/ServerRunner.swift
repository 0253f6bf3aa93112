import Glibc
import Logging
import Reactor

/// `pop3d serve`: listeners (from systemd or the configuration), the service, signals,
/// and the sd_notify lifecycle: READY, STATUS, WATCHDOG, RELOADING, STOPPING + drain.
public final class ServerRunner {
    /// STATUS= is sent at most this often, and only when a count changed.
    public static let statusIntervalNanoseconds: UInt64 = 1_000_000_000

    let config: ServerConfig
    let logger: Logger
    let loop: EventLoop
    private(set) var listeners: [(listener: Listener, implicitTLS: Bool)] = []
    private var service: POP3Service!
    private var lastStatus = ""
    private var stopping = false

    public init(config: ServerConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        loop = try EventLoop(logger: logger)
    }

    /// Runs until a SIGTERM/SIGINT drain completes; returns the exit status.
    public func run() throws -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        raiseDescriptorLimit()
        try openListeners()
        service = try POP3Service(config: config, loop: loop, logger: logger)
        try dropPrivileges()
        for (listener, implicitTLS) in listeners {
            try loop.addListener(listener) { [unowned self] socket in
                self.service.accept(socket, implicitTLS: implicitTLS)
            }
            logger.info("listening", metadata: [
                "address": "\(listener.address.map { "\($0)" } ?? "fd \(listener.fd)")",
                "tls": "\(implicitTLS)", "inherited": "\(listener.inherited)",
            ])
        }
        try loop.onSignals([SIGTERM, SIGINT, SIGHUP]) { [unowned self] signo in
            if signo == SIGHUP { self.reload() } else { self.beginShutdown(signo) }
        }
        Systemd.notify("READY=1\nSTATUS=\(statusLine())")
        scheduleStatus()
        if let interval = Systemd.watchdogInterval() {
            scheduleWatchdog(every: max(1_000_000, interval / 2))
        }
        try loop.run()
        for (listener, _) in listeners { listener.close() }
        logger.info("stopped", metadata: ["sessions.served": "\(service.sessionsServed)"])
        return 0
    }

    // MARK: listeners

    private func openListeners() throws {
        let inherited = Systemd.listenFDs()
        if !inherited.isEmpty {
            for (fd, name) in inherited {
                guard Systemd.isListeningInetStream(fd) else {
                    throw ConfigError("systemd passed fd \(fd) (\(name ?? "unnamed")) that is not a listening TCP socket")
                }
                switch name {
                case nil, "pop3":
                    listeners.append((try Listener(inheritedFD: fd, name: name), false))
                case "pop3s":
                    guard !config.tlsCert.isEmpty else {
                        throw ConfigError("systemd passed fd \(fd) named pop3s (implicit TLS) but no tls_cert/tls_key is configured")
                    }
                    listeners.append((try Listener(inheritedFD: fd, name: name), true))
                case let other?:
                    throw ConfigError("systemd passed fd \(fd) named '\(other)'; use FileDescriptorName=pop3 or pop3s")
                }
            }
            return
        }
        for text in config.listen {
            listeners.append((try bind(text), false))
        }
        for text in config.listenTLS {
            listeners.append((try bind(text), true))
        }
        if listeners.isEmpty {
            throw ConfigError("no listeners: give --listen HOST:PORT (or listen: in the config), or start under systemd socket activation")
        }
    }

    private func bind(_ text: String) throws -> Listener {
        guard let address = SocketAddress(parsing: text) else {
            throw ConfigError("listen: '\(text)' is not HOST:PORT or [IPV6]:PORT")
        }
        do {
            return try Listener(bind: address, reusePort: config.reusePort)
        } catch {
            throw ConfigError("listen: cannot listen on \(text): \(error)")
        }
    }

    /// Descriptors one logged-in session holds: its socket and its maildrop lock (the Maildir's
    /// directories are open only while listing, retrieving or deleting).
    public static let descriptorsPerSession = 2
    /// Descriptors kept for listeners, the epoll/timer/signal/event fds, logs and message files.
    public static let descriptorReserve: rlim_t = 1024

    /// Descriptors `maxConnections` sessions need: `descriptorsPerSession` each plus
    /// `descriptorReserve`. Saturates instead of trapping for any input.
    public static func descriptorsNeeded(maxConnections: Int) -> rlim_t {
        let sessions = rlim_t(max(0, maxConnections))
        let (perSessions, overflow) = sessions.multipliedReportingOverflow(by: rlim_t(descriptorsPerSession))
        if overflow { return rlim_t.max }
        let (total, overflow2) = perSessions.addingReportingOverflow(descriptorReserve)
        return overflow2 ? rlim_t.max : total
    }

    /// The most sessions `descriptors` descriptors carry (the inverse of `descriptorsNeeded`):
    /// 0 when the limit does not even cover the reserve.
    public static func connectionsFitting(descriptors: rlim_t) -> Int {
        guard descriptors > descriptorReserve else { return 0 }
        let sessions = (descriptors - descriptorReserve) / rlim_t(descriptorsPerSession)
        return sessions > rlim_t(Int.max) ? Int.max : Int(sessions)
    }

    /// RLIMIT_NOFILE now: (soft, hard), or nil when getrlimit fails.
    public static func descriptorLimits() -> (soft: rlim_t, hard: rlim_t)? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return (limit.rlim_cur, limit.rlim_max)
    }

    /// Raises RLIMIT_NOFILE to what `max_connections` needs: the soft limit up to the hard one,
    /// and as root the hard one too (up to fs.nr_open). systemd's LimitNOFILE= sets both; by
    /// hand the usual 1024 would refuse the 1,021st client with EMFILE.
    private func raiseDescriptorLimit() {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            logger.warning("getrlimit(RLIMIT_NOFILE) failed: \(errnoText()); keeping the descriptor limit as it is")
            return
        }
        let wanted = Self.descriptorsNeeded(maxConnections: config.maxConnections)
        if limit.rlim_max < wanted && geteuid() == 0 {
            var raised = limit
            raised.rlim_max = wanted
            raised.rlim_cur = wanted
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        if limit.rlim_cur < min(wanted, limit.rlim_max) {
            limit.rlim_cur = min(wanted, limit.rlim_max)
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) != 0 {
                logger.warning("setrlimit(RLIMIT_NOFILE, \(limit.rlim_cur)) failed: \(errnoText())")
                _ = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
            }
        }
        if limit.rlim_cur < wanted {
            let fits = Self.connectionsFitting(descriptors: limit.rlim_cur)
            logger.warning("RLIMIT_NOFILE is \(limit.rlim_cur); max_connections \(config.maxConnections) needs \(wanted), this limit carries about \(fits) sessions (raise LimitNOFILE= or ulimit -n, or lower max_connections)")
        }
    }

    // MARK: privileges

    /// Started as root with `user` set: switch to that user once the ports are bound.
    private func dropPrivileges() throws {
        guard let name = config.user else { return }
        guard geteuid() == 0 else {
            logger.warning("user '\(name)' configured but not running as root; keeping uid \(geteuid())")
            return
        }
        guard let pw = getpwnam(name) else { throw ConfigError("user: no such user '\(name)'") }
        let uid = pw.pointee.pw_uid
        let gid = pw.pointee.pw_gid
        guard initgroups(name, gid) == 0, setgid(gid) == 0, setuid(uid) == 0 else {
            throw ConfigError("user: cannot switch to '\(name)': \(errnoText())")
        }
        logger.info("dropped privileges", metadata: ["user": "\(name)", "uid": "\(uid)"])
    }

    // MARK: systemd lifecycle

    func statusLine() -> String {
        guard let service else { return "starting" }
        let base = "\(service.connectionCount) connections, \(service.loggedInCount) logged in, \(service.sessionsServed) sessions served"
        return stopping ? "draining: " + base : base
    }

    private func scheduleStatus() {
        _ = loop.scheduleTimer(after: Self.statusIntervalNanoseconds) { [weak self] in
            guard let self else { return }
            let line = self.statusLine()
            if line != self.lastStatus {
                self.lastStatus = line
                Systemd.notify("STATUS=\(line)")
            }
            self.scheduleStatus()
        }
    }

    private func scheduleWatchdog(every ns: UInt64) {
        Systemd.notify("WATCHDOG=1")
        _ = loop.scheduleTimer(after: ns) { [weak self] in self?.scheduleWatchdog(every: ns) }
    }

    private func reload() {
        Systemd.notify("RELOADING=1\nMONOTONIC_USEC=\(Systemd.monotonicMicroseconds())")
        logger.info("reloading")
        service.reload()
        Systemd.notify("READY=1\nSTATUS=\(statusLine())")
    }

    private func beginShutdown(_ signo: Int32) {
        guard !stopping else { return }
        stopping = true
        logger.info("draining", metadata: ["signal": "\(signo)", "sessions": "\(service.connectionCount)"])
        Systemd.notify("STOPPING=1\nSTATUS=\(statusLine())")
        loop.stopAccepting()
        // Close our listening descriptors so new clients are refused at once instead of waiting
        // unanswered in the backlog. An inherited socket is only closed, never shut down:
        // systemd keeps its copy and queues connections for the next pop3d.
        for (listener, _) in listeners { listener.close() }
        service.onDrained = { [weak self] in self?.loop.stop() }
        let timeout = UInt64(config.shutdownTimeoutSeconds) * 1_000_000_000
        _ = loop.scheduleTimer(after: timeout) { [weak self] in
            guard let self else { return }
            self.logger.warning("shutdown timeout: closing \(self.service.connectionCount) busy session(s)")
            self.service.closeAll()
            self.loop.stop()
        }
        service.drain()
    }
}
