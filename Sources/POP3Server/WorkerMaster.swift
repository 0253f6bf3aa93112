import CShim
import Glibc
import Logging
import Reactor

/// `pop3d serve` with `workers` > 1: the master process of the nginx model. It takes the
/// listeners (systemd's, or bound here), starts N workers, supervises them and speaks to
/// systemd for all of them. It does no client I/O: every session lives in one
/// single-threaded worker, which is today's `ServerRunner` over the shared listening sockets.
///
/// - Workers are fresh execs of this binary (`/proc/self/exe`, same arguments) handed a
///   `WorkerContext` in the environment and the descriptors without FD_CLOEXEC; exec rather
///   than fork, because this process has threads (the configuration loader's) and a forked
///   child of a threaded process may only call async-signal-safe functions.
/// - One accept queue per listening socket, shared by every worker's epoll with
///   EPOLLEXCLUSIVE (not one SO_REUSEPORT socket per worker): it works unchanged with
///   systemd's sockets, a dead worker takes no queued connection with it, and a restarted
///   worker needs no port. ARCHITECTURE.md says why.
/// - State: the `Scoreboard` (shared memory) has each worker's state, counts and heartbeat;
///   a worker wakes this loop through an eventfd when it is ready or has reloaded; SIGCHLD
///   says a worker died.
/// - systemd: READY=1 once every worker serves, STATUS= with their sums, WATCHDOG=1 only
///   while every worker is alive and its loop wrote a heartbeat within the watchdog
///   interval, RELOADING=1 … READY=1 around a SIGHUP that every worker has finished,
///   STOPPING=1 on SIGTERM. NotifyAccess=main holds: only this process talks to systemd.
public final class WorkerMaster {
    /// How often the master reads the scoreboard (hung workers, STATUS=).
    public static let tickNanoseconds: UInt64 = 250_000_000
    /// A SIGHUP that not every worker has finished after this long gets READY=1 anyway, with
    /// a warning naming the workers that did not answer.
    public static let reloadTimeoutNanoseconds: UInt64 = 60_000_000_000
    /// After `shutdown_timeout` the workers close their busy sessions themselves; one still
    /// alive this much later is killed (SIGKILL).
    public static let drainGraceNanoseconds: UInt64 = 5_000_000_000
    /// The longest wait before restarting a worker that keeps exiting.
    public static let maxRestartDelayNanoseconds: UInt64 = 1_000_000_000
    /// Environment variables a worker must not see: systemd's are for the master alone.
    static let masterOnlyEnvironment = [
        "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
        WorkerContext.environmentName,
    ]

    /// One worker slot (1-based id); the process in it changes on every restart.
    struct Worker {
        let id: Int
        var pid: Int32?
        /// CLOCK_MONOTONIC ns of its recent exits (at most `worker_start_limit_burst`).
        var exits: [UInt64] = []
        /// Not restarted any more (crash loop); the reason for the log and STATUS=.
        var failure: String?
        /// Killed by the master for a hung loop: the reaping says so.
        var killedAsHung = false
    }

    enum Phase {
        /// Until every worker serves once: a worker that dies now is a start-up failure.
        case starting
        case serving
        /// SIGTERM: draining; the exit status once the last worker is gone.
        case stopping(exitStatus: Int32)
    }

    let config: ServerConfig
    let logger: Logger
    let loop: EventLoop
    /// The workers publish their metrics and this master serves the host's `/metrics`.
    public var collectsMetrics = false
    private var listeners: [(listener: Listener, implicitTLS: Bool)] = []
    /// `metrics_listen`: served here, from this loop, with every worker's series summed
    /// (`renderMetrics`). Close-on-exec, so no worker inherits it.
    private var metricsListener: Listener?
    private var metrics: MetricsEndpoint?
    private var scoreboard: Scoreboard!
    /// The workers' metrics snapshots, when this master serves `/metrics` (WorkerMaster+Metrics.swift).
    var metricsShare: MetricsShare?
    /// What the master keeps of the workers' metrics (WorkerMaster+Metrics.swift).
    var metricsState = MasterMetricsState()
    private var waker: Waker!
    private(set) var workers: [Worker] = []
    private var phase = Phase.starting
    /// Sessions served by worker processes that have exited (their slots were cleared).
    private var servedByExited: UInt64 = 0
    /// The SIGHUP being waited for: its generation and its timeout timer.
    private var pendingReload: (generation: UInt64, timer: TimerID)?
    /// A SIGHUP came while the workers were starting: reload once every one serves.
    private var reloadWhenServing = false
    private var lastStatus = ""
    private var exitStatus: Int32 = 0
    private let executable = "/proc/self/exe"
    private let arguments: [String]

    /// A master for `config`; `arguments` are what each worker is executed with (`/proc/self/exe`,
    /// so a replaced binary on disk does not change the workers). Nothing starts until `run()`.
    /// - Throws: the `SyscallError` of the loop's epoll_create1, timerfd_create or epoll_ctl.
    public init(config: ServerConfig, logger: Logger, arguments: [String] = CommandLine.arguments) throws {
        self.config = config
        self.logger = logger
        self.arguments = arguments
        loop = try EventLoop(logger: logger)
    }

    /// Runs until the last worker is gone after SIGTERM/SIGINT (0), or every worker slot
    /// failed, or the first start failed (1).
    public func run() throws -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        // Every worker may end up holding all max_connections (accepting is first come):
        // each needs the whole descriptor budget. Raised here (root can raise the hard
        // limit) and inherited; each worker checks again.
        ServerRunner.raiseDescriptorLimit(maxConnections: config.maxConnections, logger: logger)
        (listeners, metricsListener) = try ServerRunner.openListeners(config: config)
        // `metrics_listen` or systemd's `metrics` socket: the workers publish, this loop serves.
        if metricsListener != nil { collectsMetrics = true }
        scoreboard = try Scoreboard(creatingFor: config.workers)
        waker = try loop.makeWaker { [unowned self] in self.readScoreboard() }
        // The descriptors a worker inherits. Kept inheritable for the master's life: it
        // starts nothing but workers.
        if collectsMetrics {
            metricsShare = try MetricsShare(creatingFor: config.workers)
            metricsState.master = MasterMetrics()
        }
        for fd in listeners.map(\.listener.fd) + [scoreboard.fd, waker.descriptor] + (metricsShare.map { [$0.fd] } ?? []) {
            guard cshim_set_cloexec(fd, 0) == 0 else { throw ConfigError("workers: fcntl(\(fd)): \(errnoText())") }
        }
        try loop.onSignals([SIGTERM, SIGINT, SIGHUP, SIGCHLD]) { [unowned self] signo in
            switch signo {
            case SIGCHLD: self.reapWorkers()
            case SIGHUP: self.reload()
            default: self.beginShutdown(signo, exitStatus: 0)
            }
        }
        for (listener, implicitTLS) in listeners {
            logger.info("listening", metadata: [
                "address": "\(listener.address.map { "\($0)" } ?? "fd \(listener.fd)")",
                "tls": "\(implicitTLS)", "inherited": "\(listener.inherited)",
            ])
        }
        if let metricsListener {
            metrics = try MetricsEndpoint(loop: loop, listener: metricsListener, logger: logger) { [unowned self] in
                self.renderMetrics(into: &$0)
            }
            MetricsEndpoint.logListening(metricsListener, logger: logger)
        }
        logger.info("master starting workers", metadata: ["workers": "\(config.workers)"])
        workers = (1...config.workers).map { Worker(id: $0) }
        for id in 1...config.workers {
            if case .stopping = phase { break }  // a spawn failed: a start-up error
            start(id)
        }
        if case .stopping = phase, workers.allSatisfy({ $0.pid == nil }) { return exitStatus }
        tick()
        try loop.run()
        for (listener, _) in listeners { listener.close() }
        metrics?.close()
        logger.info("master stopped", metadata: ["sessions.served": "\(totals().served)", "status": "\(exitStatus)"])
        return exitStatus
    }

    // MARK: starting workers

    private var listenerDescriptors: [WorkerContext.ListenerDescriptor] {
        listeners.map { .init(fd: $0.listener.fd, implicitTLS: $0.implicitTLS, name: $0.listener.name) }
    }

    /// Spawns the worker of slot `id`. A spawn that fails counts as an exit of that slot.
    private func start(_ id: Int) {
        let context = WorkerContext(id: id, masterPID: getpid(), scoreboardFD: scoreboard.fd,
                                    wakeFD: waker.descriptor, listeners: listenerDescriptors,
                                    metricsFD: metricsShare?.fd)
        let slot = scoreboard.slot(id)
        slot.clear()
        slot.state = .starting
        var environment = currentEnvironment().filter { entry in
            !Self.masterOnlyEnvironment.contains { entry.hasPrefix($0 + "=") }
        }
        environment.append("\(WorkerContext.environmentName)=\(context.encoded)")
        switch spawn(arguments: arguments, environment: environment) {
        case .success(let pid):
            slot.pid = pid
            workers[id - 1].pid = pid
            workers[id - 1].killedAsHung = false
            logger.info("worker started", metadata: ["worker": "\(id)", "pid": "\(pid)"])
        case .failure(let error):
            slot.clear()
            logger.error("worker \(id) could not be started: \(errnoText(error.code))")
            workerEnded(id, description: "spawn failed")
        }
    }

    private func spawn(arguments: [String], environment: [String]) -> Result<Int32, SpawnError> {
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let code = cshim_spawn(executable, &argv, &envp, &pid)
        return code == 0 ? .success(pid) : .failure(SpawnError(code: code))
    }

    struct SpawnError: Error { let code: Int32 }

    private func currentEnvironment() -> [String] {
        var result: [String] = []
        var p = environ
        while let entry = p.pointee {
            result.append(String(cString: entry))
            p += 1
        }
        return result
    }

    // MARK: exits

    /// SIGCHLD: reaps every exited worker (signals coalesce: one SIGCHLD may stand for several).
    private func reapWorkers() {
        while true {
            var exited: Int32 = 0, code: Int32 = 0, signo: Int32 = 0, core: Int32 = 0
            let pid = cshim_reap_child(&exited, &code, &signo, &core)
            if pid <= 0 { return }
            guard let index = workers.firstIndex(where: { $0.pid == pid }) else { continue }
            let id = workers[index].id
            let slot = scoreboard.slot(id)
            servedByExited &+= slot[.sessionsServed]
            slot.clear()
            retireMetrics(of: id)
            workers[index].pid = nil
            var description = exited != 0 ? "exit status \(code)" : "killed by signal \(signo)\(core != 0 ? " (core dumped)" : "")"
            if workers[index].killedAsHung { description += " after its loop hung" }
            let clean = exited != 0 && code == 0
            if case .stopping = phase, clean {
                logger.info("worker exited", metadata: ["worker": "\(id)", "pid": "\(pid)", "status": "\(description)"])
            } else {
                logger.error("worker exited", metadata: ["worker": "\(id)", "pid": "\(pid)", "status": "\(description)"])
            }
            workerEnded(id, description: description)
        }
    }

    /// After a worker of slot `id` is gone: finish a drain, fail a start, or restart it
    /// (unless it has exited `worker_start_limit_burst` times within the interval).
    private func workerEnded(_ id: Int, description: String) {
        switch phase {
        case .stopping(let status):
            if workers.allSatisfy({ $0.pid == nil }) {
                exitStatus = status
                loop.stop()
            }
            return
        case .starting:
            logger.critical("worker \(id) did not start (\(description)): stopping; its own error is in the lines above")
            beginShutdown(nil, exitStatus: 1)
            return
        case .serving:
            break
        }
        let now = cshim_monotonic_ns()
        let window = UInt64(config.workerStartLimitIntervalSeconds) * 1_000_000_000
        var exits = workers[id - 1].exits.filter { now &- $0 < window }
        exits.append(now)
        workers[id - 1].exits = Array(exits.suffix(config.workerStartLimitBurst))
        if exits.count >= config.workerStartLimitBurst {
            let reason = "\(exits.count) exits within \(config.workerStartLimitIntervalSeconds) s, last: \(description)"
            workers[id - 1].failure = reason
            logger.critical("worker \(id) is not restarted any more: \(reason)")
            publishStatus(force: true)
            if workers.allSatisfy({ $0.failure != nil }) {
                logger.critical("every worker failed: the master exits")
                beginShutdown(nil, exitStatus: 1)
            }
            return
        }
        // The first restart is immediate; repeated exits back off (100 ms, 200 ms, … at most
        // 1 s), so a cause that lasts a moment (a passwd-file being rewritten) does not use
        // up the start limit in a few milliseconds.
        metricsState.master?.restarts.increment()
        let delay = Self.restartDelay(recentExits: exits.count)
        if delay == 0 { return start(id) }
        logger.notice("worker \(id) starts again in \(delay / 1_000_000) ms")
        _ = loop.scheduleTimer(after: delay) { [weak self] in
            guard let self, case .serving = self.phase, self.workers[id - 1].pid == nil,
                  self.workers[id - 1].failure == nil else { return }
            self.start(id)
        }
    }

    /// Nanoseconds before restarting a slot that exited `recentExits` times within
    /// `worker_start_limit_interval`: 0 for the first, then 100 ms doubling, at most 1 s.
    static func restartDelay(recentExits: Int) -> UInt64 {
        guard recentExits > 1 else { return 0 }
        let shift = min(recentExits - 2, 4)
        return min(Self.maxRestartDelayNanoseconds, 100_000_000 << UInt64(shift))
    }

    // MARK: the scoreboard

    /// A worker woke us (ready, reloaded), or the tick: READY=1 and a finished reload.
    private func readScoreboard() {
        if case .starting = phase,
           workers.allSatisfy({ $0.pid != nil && scoreboard.slot($0.id).state == .serving }) {
            phase = .serving
            logger.info("every worker is serving", metadata: ["workers": "\(workers.count)"])
            lastStatus = statusLine()
            Systemd.notify("READY=1\nSTATUS=\(lastStatus)")
            if let interval = Systemd.watchdogInterval() {
                scheduleWatchdog(interval: interval)
            }
            if reloadWhenServing {
                reloadWhenServing = false
                reload()
            }
        }
        if case .serving = phase, let pending = pendingReload, waitingForReload(pending.generation).isEmpty {
            loop.cancelTimer(pending.timer)
            pendingReload = nil
            logger.info("every worker has reloaded")
            lastStatus = statusLine()
            Systemd.notify("READY=1\nSTATUS=\(lastStatus)")
        }
    }

    /// Live workers that have not finished reload `generation` (a worker still starting has
    /// not read its configuration yet, so it is waited for too).
    private func waitingForReload(_ generation: UInt64) -> [Int] {
        workers.filter { worker in
            guard worker.pid != nil else { return false }
            let slot = scoreboard.slot(worker.id)
            return slot.state == .starting || slot[.reloadedGeneration] < generation
        }.map(\.id)
    }

    /// Every `tickNanoseconds`: hung workers, STATUS=.
    private func tick() {
        let now = cshim_monotonic_ns()
        let limit = UInt64(config.workerWatchdogTimeoutSeconds) * 1_000_000_000
        for index in workers.indices {
            guard let pid = workers[index].pid, !workers[index].killedAsHung else { continue }
            let slot = scoreboard.slot(workers[index].id)
            // Only a worker that has served: start-up (a large passwd-file) has no heartbeat.
            guard slot.state == .serving || slot.state == .draining else { continue }
            let silent = now &- slot[.heartbeat]
            if slot[.heartbeat] < now, silent > limit {
                logger.critical("worker \(workers[index].id) (pid \(pid)) has not answered for \(silent / 1_000_000) ms (worker_watchdog_timeout \(config.workerWatchdogTimeoutSeconds) s): killing it")
                workers[index].killedAsHung = true
                kill(pid, SIGKILL)
            }
        }
        readScoreboard()
        publishStatus(force: false)
        cacheMetricSnapshots()
        _ = loop.scheduleTimer(after: Self.tickNanoseconds) { [weak self] in self?.tick() }
    }

    struct Totals {
        var connections: UInt64 = 0
        var loggedIn: UInt64 = 0
        var served: UInt64 = 0
    }

    private func totals() -> Totals {
        var t = Totals(served: servedByExited)
        for worker in workers where worker.pid != nil {
            let slot = scoreboard.slot(worker.id)
            t.connections &+= slot[.connections]
            t.loggedIn &+= slot[.loggedIn]
            t.served &+= slot[.sessionsServed]
        }
        return t
    }

    /// The STATUS= text: the single process's line summed over the workers, then the workers.
    func statusLine() -> String {
        let t = totals()
        var line = "\(t.connections) connections, \(t.loggedIn) logged in, \(t.served) sessions served"
        let failed = workers.filter { $0.failure != nil }
        line += "; \(workers.count - failed.count) of \(workers.count) workers"
        for worker in failed { line += "; worker \(worker.id) not restarted (\(worker.failure ?? ""))" }
        if case .stopping = phase { line = "draining: " + line }
        return line
    }

    private func publishStatus(force: Bool) {
        guard case .serving = phase else { if force { Systemd.notify("STATUS=\(statusLine())") }; return }
        let line = statusLine()
        if force || line != lastStatus {
            lastStatus = line
            Systemd.notify("STATUS=\(line)")
        }
    }

    /// WATCHDOG=1 at half systemd's interval, only while every slot has a live worker whose
    /// loop wrote a heartbeat within the interval. A worker that stopped being restarted
    /// stops the pings, so systemd restarts the whole service (WatchdogSec=).
    private func scheduleWatchdog(interval: UInt64) {
        let now = cshim_monotonic_ns()
        let healthy = workers.allSatisfy { worker in
            guard worker.failure == nil, worker.pid != nil else { return false }
            let slot = scoreboard.slot(worker.id)
            return (slot.state == .serving || slot.state == .draining) && now &- slot[.heartbeat] < interval
        }
        if healthy { Systemd.notify("WATCHDOG=1") }
        _ = loop.scheduleTimer(after: max(1_000_000, interval / 2)) { [weak self] in
            self?.scheduleWatchdog(interval: interval)
        }
    }

    // MARK: signals

    /// SIGHUP: RELOADING=1, the signal to every worker, READY=1 once each has reloaded.
    private func reload() {
        switch phase {
        case .starting:
            // Some workers may have read the configuration before it was edited: reload all
            // of them as soon as every one serves.
            reloadWhenServing = true
            logger.notice("SIGHUP while the workers are starting: they reload once every one serves")
            return
        case .stopping:
            logger.notice("SIGHUP ignored: the workers are stopping")
            return
        case .serving:
            break
        }
        let generation = scoreboard.requestedReload &+ 1
        scoreboard.requestedReload = generation
        logger.info("reloading", metadata: ["generation": "\(generation)"])
        Systemd.notify("RELOADING=1\nMONOTONIC_USEC=\(Systemd.monotonicMicroseconds())")
        if let pending = pendingReload { loop.cancelTimer(pending.timer) }
        let timer = loop.scheduleTimer(after: Self.reloadTimeoutNanoseconds) { [weak self] in
            guard let self, let pending = self.pendingReload, pending.generation == generation else { return }
            self.pendingReload = nil
            let late = self.waitingForReload(generation)
            self.logger.warning("reload: worker(s) \(late.map(String.init).joined(separator: ", ")) did not finish within \(Self.reloadTimeoutNanoseconds / 1_000_000_000) s; READY anyway")
            Systemd.notify("READY=1\nSTATUS=\(self.statusLine())")
        }
        pendingReload = (generation, timer)
        for worker in workers { if let pid = worker.pid { kill(pid, SIGHUP) } }
        // A slot given up after a crash loop gets a new chance: the reload may have fixed
        // its cause (a passwd-file restored). Its worker reads everything anew at start.
        for index in workers.indices where workers[index].failure != nil && workers[index].pid == nil {
            let id = workers[index].id
            workers[index].failure = nil
            workers[index].exits = []
            logger.notice("worker \(id) is started again after the reload")
            start(id)
        }
        publishStatus(force: true)
        readScoreboard()
    }

    /// SIGTERM/SIGINT (`signo`), or the master's own decision (nil): drain every worker.
    private func beginShutdown(_ signo: Int32?, exitStatus status: Int32) {
        if case .stopping = phase { return }
        phase = .stopping(exitStatus: status)
        // A reload still under way is never answered: READY=1 after STOPPING=1 would tell
        // systemd the service is up again.
        if let pending = pendingReload {
            loop.cancelTimer(pending.timer)
            pendingReload = nil
        }
        logger.info("draining", metadata: ["signal": "\(signo.map(String.init) ?? "-")", "workers": "\(workers.filter { $0.pid != nil }.count)"])
        Systemd.notify("STOPPING=1\nSTATUS=\(statusLine())")
        // Our copies must go too, or the kernel would keep queueing clients nobody accepts.
        for (listener, _) in listeners { listener.close() }
        metrics?.stopAccepting()
        for worker in workers { if let pid = worker.pid { kill(pid, SIGTERM) } }
        if workers.allSatisfy({ $0.pid == nil }) {
            exitStatus = status
            loop.stop()
            return
        }
        let grace = UInt64(config.shutdownTimeoutSeconds) * 1_000_000_000 &+ Self.drainGraceNanoseconds
        _ = loop.scheduleTimer(after: grace) { [weak self] in
            guard let self else { return }
            for worker in self.workers {
                guard let pid = worker.pid else { continue }
                self.logger.warning("worker \(worker.id) (pid \(pid)) still running after the drain: SIGKILL")
                kill(pid, SIGKILL)
            }
        }
    }
}
