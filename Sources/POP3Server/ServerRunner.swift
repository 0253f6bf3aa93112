import CShim
import Glibc
import Logging
import Reactor

/// `pop3d serve` in one process: listeners (from systemd or the configuration), the service,
/// signals, and the sd_notify lifecycle: READY, STATUS, WATCHDOG, RELOADING, STOPPING + drain.
///
/// The same runner is a worker of a `WorkerMaster` when given a `WorkerContext`: it then
/// takes the master's listening sockets (registered with EPOLLEXCLUSIVE), says nothing to
/// systemd, and reports through the scoreboard instead (ready, counts, heartbeats, reloads).
public final class ServerRunner {
    /// STATUS= is sent at most this often, and only when a count changed.
    public static let statusIntervalNanoseconds: UInt64 = 1_000_000_000
    /// A worker writes its heartbeat and counts to the scoreboard this often (from a loop
    /// timer, so a hung loop stops writing it).
    public static let heartbeatIntervalNanoseconds: UInt64 = 250_000_000

    let config: ServerConfig
    let logger: Logger
    let loop: EventLoop
    let worker: WorkerContext?
    private(set) var listeners: [(listener: Listener, implicitTLS: Bool)] = []
    /// `metrics_listen` (or systemd's `metrics` socket): single process only, never a worker.
    var metricsListener: Listener?
    var metrics: MetricsEndpoint?
    private(set) var service: POP3Service!
    private var scoreboard: Scoreboard?
    /// Worker of a master that serves `/metrics`: where this worker leaves its snapshot.
    private var metricsShare: MetricsShare?
    /// Reused for every snapshot: no allocation per heartbeat once it has grown.
    private var metricsBuffer: [UInt8] = []
    private var metricsTooLargeLogged = false
    private var lastStatus = ""
    private var stopping = false

    private let configSource: (@Sendable () throws -> ServerConfig)?

    /// `worker`: run as that worker of a master (`WorkerContext.fromEnvironment()`).
    /// `configSource`: reads the configuration again on SIGHUP (as it was read at start).
    public init(config: ServerConfig, logger: Logger, worker: WorkerContext? = nil,
                configSource: (@Sendable () throws -> ServerConfig)? = nil) throws {
        if let worker {
            let board = try Scoreboard(inheritedFD: worker.scoreboardFD)
            guard worker.id <= board.workers else {
                throw ConfigError("worker \(worker.id): the scoreboard has \(board.workers) slots")
            }
            scoreboard = board
            // The master's worker count, not the file's: a worker restarted after someone
            // edited `workers` in the file must still divide by the workers that exist.
            let workers = board.workers
            var adjusted = config
            adjusted.workers = workers
            self.config = adjusted.dividedAmongWorkers()
            if let configSource {
                let shared: @Sendable () throws -> ServerConfig = {
                    var config = try configSource()
                    let asked = config.workers
                    config.workers = workers
                    var share = config.dividedAmongWorkers()
                    // The file's value again: a changed `workers` is then named in the reload's
                    // "take effect only after a restart" warning (applyReloaded keeps the
                    // running count), instead of vanishing without a word.
                    share.workers = asked
                    return share
                }
                self.configSource = shared
            } else {
                self.configSource = nil
            }
        } else {
            self.config = config
            self.configSource = configSource
        }
        self.logger = logger
        self.worker = worker
        loop = try EventLoop(logger: logger)
    }

    /// Runs until a SIGTERM/SIGINT drain completes; returns the exit status.
    public func run() throws -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        if let worker {
            guard getppid() == worker.masterPID else { throw ConfigError("worker \(worker.id): the master (pid \(worker.masterPID)) is gone") }
            _ = cshim_set_cloexec(worker.scoreboardFD, 1)
            _ = cshim_set_cloexec(worker.wakeFD, 1)
            if let fd = worker.metricsFD {
                _ = cshim_set_cloexec(fd, 1)
                metricsShare = try MetricsShare(inheritedFD: fd)
            }
            // The master raised the limit and warned if it is short; workers inherit it.
            Self.raiseDescriptorLimit(maxConnections: config.maxConnections, logger: logger, warn: false)
            for entry in worker.listeners {
                listeners.append((try Listener(inheritedFD: entry.fd, name: entry.name), entry.implicitTLS))
            }
        } else {
            Self.raiseDescriptorLimit(maxConnections: config.maxConnections, logger: logger)
            (listeners, metricsListener) = try Self.openListeners(config: config)
        }
        service = try POP3Service(config: config, loop: loop, logger: logger)
        service.configSource = configSource
        if metricsShare != nil { service.enableMetrics() }
        if let worker, let scoreboard {
            service.hostShare = WorkerShare(scoreboard: scoreboard, id: worker.id)
            // Other workers wait on the same sockets: one that cannot carry more sessions
            // leaves them the connections (a single process refuses with max_connections).
            if let limits = Self.descriptorLimits() {
                let fits = Self.connectionsFitting(descriptors: limits.soft)
                if fits < config.maxConnections { service.acceptCapacity = max(1, fits) }
            }
        }
        try dropPrivileges()
        // After the switch to `user`: the database sees pop3d's user, not root.
        service.startUserDatabase()
        if let worker {
            // The kernel sends SIGTERM (a drain) if the master dies. Set after the switch to
            // `user`: a change of the effective uid or gid clears it (prctl(2),
            // PR_SET_PDEATHSIG). A master that died before this line is caught by the check.
            _ = cshim_set_parent_death_signal(SIGTERM)
            guard getppid() == worker.masterPID else { throw ConfigError("worker \(worker.id): the master (pid \(worker.masterPID)) is gone") }
        }
        for (listener, implicitTLS) in listeners {
            try loop.addListener(listener, exclusive: worker != nil) { [unowned self] socket in
                self.service.accept(socket, implicitTLS: implicitTLS)
            }
            logger.info("listening", metadata: [
                "address": "\(listener.address.map { "\($0)" } ?? "fd \(listener.fd)")",
                "tls": "\(implicitTLS)", "inherited": "\(listener.inherited)",
            ])
        }
        try startMetrics()
        try loop.onSignals([SIGTERM, SIGINT, SIGHUP]) { [unowned self] signo in
            if signo == SIGHUP { self.reload() } else { self.beginShutdown(signo) }
        }
        if let worker, let scoreboard {
            let slot = scoreboard.slot(worker.id)
            // Started after the reload the master last asked for: this worker read everything anew.
            slot[.reloadedGeneration] = scoreboard.requestedReload
            heartbeat()
            slot.state = .serving
            worker.wakeMaster()
        } else {
            Systemd.notify("READY=1\nSTATUS=\(statusLine())")
            scheduleStatus()
            if let interval = Systemd.watchdogInterval() {
                scheduleWatchdog(every: max(1_000_000, interval / 2))
            }
        }
        try loop.run()
        LogBatch.standardError.flush()  // session ends of the last turn, whatever the log level
        if let worker, let scoreboard {
            // Joining the threads can take a while (a passwd-file parse runs to its end):
            // not a hung loop, so the master must not kill this worker for it.
            scoreboard.slot(worker.id).state = .stopped
        }
        for (listener, _) in listeners { listener.close() }
        metrics?.close()
        logger.info("stopped", metadata: ["sessions.served": "\(service.sessionsServed)"])
        if let worker, let scoreboard { publishCounts(scoreboard.slot(worker.id)) }
        // The last counts, so the master's host totals include this worker's final sessions.
        publishMetrics()
        return 0
    }

    /// Worker: heartbeat and counts into this worker's slot, every `heartbeatIntervalNanoseconds`.
    private func heartbeat() {
        guard let worker, let scoreboard else { return }
        let slot = scoreboard.slot(worker.id)
        slot[.heartbeat] = cshim_monotonic_ns()
        publishCounts(slot)
        publishMetrics()
        _ = loop.scheduleTimer(after: Self.heartbeatIntervalNanoseconds) { [weak self] in self?.heartbeat() }
    }

    /// Worker: this process's metrics into its slot of the master's metrics area (with the
    /// heartbeat, so a scrape of the master sees counts at most that old).
    private func publishMetrics() {
        guard let worker, let metricsShare else { return }
        metricsBuffer.removeAll(keepingCapacity: true)
        service.renderMetrics(into: &metricsBuffer)
        if !metricsShare.publish(worker: worker.id, metricsBuffer), !metricsTooLargeLogged {
            metricsTooLargeLogged = true
            logger.error("metrics snapshot of \(metricsBuffer.count) octets does not fit MetricsShare.slotBytes (\(MetricsShare.slotBytes)); the master shows an older one")
        }
    }

    private func publishCounts(_ slot: Scoreboard.Slot) {
        slot[.connections] = UInt64(max(0, service.connectionCount))
        slot[.loggedIn] = UInt64(max(0, service.loggedInCount))
        slot[.sessionsServed] = UInt64(max(0, service.sessionsServed))
        slot[.unauthenticated] = UInt64(max(0, service.unauthenticatedCount))
    }

    // MARK: listeners

    /// The listeners of `config`: systemd's (by FileDescriptorName=) when socket-activated,
    /// else bound here. The metrics listener is systemd's socket named `metrics`, else
    /// `metrics_listen` bound here (also under socket activation: a unit may pass only the
    /// POP3 sockets), else none. Throws `ConfigError` naming the problem.
    static func openListeners(config: ServerConfig) throws -> (pop3: [(listener: Listener, implicitTLS: Bool)], metrics: Listener?) {
        var listeners: [(listener: Listener, implicitTLS: Bool)] = []
        var metrics: Listener?
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
                case "metrics":
                    guard metrics == nil else {
                        throw ConfigError("systemd passed two sockets named metrics (fd \(fd) is the second); give one")
                    }
                    metrics = try Listener(inheritedFD: fd, name: name)
                case let other?:
                    throw ConfigError("systemd passed fd \(fd) named '\(other)'; use FileDescriptorName=pop3, pop3s or metrics")
                }
            }
            guard !listeners.isEmpty else {
                throw ConfigError("systemd passed no pop3 or pop3s socket (only metrics); name the POP3 socket FileDescriptorName=pop3")
            }
            return (listeners, try metrics ?? bindMetrics(config: config))
        }
        for text in config.listen {
            listeners.append((try bind(text, config: config), false))
        }
        for text in config.listenTLS {
            listeners.append((try bind(text, config: config), true))
        }
        if listeners.isEmpty {
            throw ConfigError("no listeners: give --listen HOST:PORT (or listen: in the config), or start under systemd socket activation")
        }
        return (listeners, try bindMetrics(config: config))
    }

    /// `metrics_listen` bound (nil when it is off).
    private static func bindMetrics(config: ServerConfig) throws -> Listener? {
        guard let text = config.metricsListen else { return nil }
        guard let address = SocketAddress(parsing: text) else {
            throw ConfigError("metrics_listen: '\(text)' is not HOST:PORT or [IPV6]:PORT")
        }
        do {
            return try Listener(bind: address, name: "metrics")
        } catch {
            throw ConfigError("metrics_listen: cannot listen on \(text): \(error)")
        }
    }

    private static func bind(_ text: String, config: ServerConfig) throws -> Listener {
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
    static func raiseDescriptorLimit(maxConnections: Int, logger: Logger, warn: Bool = true) {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            logger.warning("getrlimit(RLIMIT_NOFILE) failed: \(errnoText()); keeping the descriptor limit as it is")
            return
        }
        let wanted = Self.descriptorsNeeded(maxConnections: maxConnections)
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
        if limit.rlim_cur < wanted && warn {
            let fits = Self.connectionsFitting(descriptors: limit.rlim_cur)
            logger.warning("RLIMIT_NOFILE is \(limit.rlim_cur); max_connections \(maxConnections) needs \(wanted), this limit carries about \(fits) sessions (raise LimitNOFILE= or ulimit -n, or lower max_connections)")
        }
    }

    // MARK: privileges

    /// Started as root with `user` set: switch to that user once the ports are bound.
    private func dropPrivileges() throws {
        guard let name = config.user else { return }
        guard geteuid() == 0 else {
            if let pw = getpwnam(name), pw.pointee.pw_uid == geteuid() { return }  // already that user
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
        logger.info("reloading")
        if let worker, let scoreboard {
            // The generation the master asked for before it sent this SIGHUP.
            let generation = scoreboard.requestedReload
            service.reload {
                scoreboard.slot(worker.id)[.reloadedGeneration] = generation
                worker.wakeMaster()
            }
            return
        }
        Systemd.notify("RELOADING=1\nMONOTONIC_USEC=\(Systemd.monotonicMicroseconds())")
        service.reload { [weak self] in
            guard let self else { return }
            Systemd.notify("READY=1\nSTATUS=\(self.statusLine())")
        }
    }

    private func beginShutdown(_ signo: Int32) {
        guard !stopping else { return }
        stopping = true
        logger.info("draining", metadata: ["signal": "\(signo)", "sessions": "\(service.connectionCount)"])
        if let worker, let scoreboard {
            scoreboard.slot(worker.id).state = .draining
        } else {
            Systemd.notify("STOPPING=1\nSTATUS=\(statusLine())")
        }
        loop.stopAccepting()
        // Close our listening descriptors so new clients are refused at once instead of waiting
        // unanswered in the backlog. An inherited socket is only closed, never shut down:
        // systemd keeps its copy and queues connections for the next pop3d.
        for (listener, _) in listeners { listener.close() }
        metrics?.stopAccepting()
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
