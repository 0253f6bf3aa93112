import CShim
import Glibc
import Logging
import Testing
@testable import POP3Server

/// What a worker gets from its master in POP3DWORKER: the encoding, and that anything
/// malformed is refused (a worker must never fall back to binding ports of its own).
@Suite struct WorkerContextTests {
    static let sample = WorkerContext(id: 2, masterPID: 1234, scoreboardFD: 5, wakeFD: 6, listeners: [
        .init(fd: 3, implicitTLS: false, name: "pop3"),
        .init(fd: 4, implicitTLS: true, name: "pop3s"),
        .init(fd: 7, implicitTLS: false, name: nil),
    ])

    @Test func encodesTheDocumentedFormatAndParsesItBack() {
        let text = Self.sample.encoded
        #expect(text == "id=2 master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3,4:tls:pop3s,7:plain:")
        #expect(WorkerContext(parsing: text) == Self.sample)
    }

    /// The metrics area's descriptor travels only when the master serves `/metrics`.
    @Test func metricsDescriptorRoundTrips() {
        var context = Self.sample
        context.metricsFD = 9
        #expect(context.encoded.hasSuffix(" metrics=9"))
        #expect(WorkerContext(parsing: context.encoded) == context)
        #expect(WorkerContext(parsing: Self.sample.encoded)?.metricsFD == nil)
    }

    @Test func fieldOrderDoesNotMatter() {
        let text = "listeners=3:plain:pop3 wake=6 scoreboard=5 master=1234 id=1"
        let parsed = WorkerContext(parsing: text)
        #expect(parsed?.id == 1)
        #expect(parsed?.listeners == [.init(fd: 3, implicitTLS: false, name: "pop3")])
    }

    @Test(arguments: [
        "",
        "garbage",
        "id=2 master=1234 scoreboard=5 wake=6",                                // no listeners
        "id=2 master=1234 scoreboard=5 wake=6 listeners=",                     // empty list
        "master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3",              // no id
        "id=0 master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3",         // ids are 1-based
        "id=1025 master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3",      // > Scoreboard.maxWorkers
        "id=two master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3",
        "id=2 master=0 scoreboard=5 wake=6 listeners=3:plain:pop3",
        "id=2 master=-7 scoreboard=5 wake=6 listeners=3:plain:pop3",
        "id=2 master=1234 scoreboard=-1 wake=6 listeners=3:plain:pop3",
        "id=2 master=1234 scoreboard=5 wake=x listeners=3:plain:pop3",
        "id=2 master=1234 scoreboard=5 wake=6 listeners=3:ssl:pop3",           // neither plain nor tls
        "id=2 master=1234 scoreboard=5 wake=6 listeners=3:plain",              // two parts
        "id=2 master=1234 scoreboard=5 wake=6 listeners=-3:plain:pop3",
        "id=2 master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3,x:tls:pop3s",
        "id=2 master=99999999999 scoreboard=5 wake=6 listeners=3:plain:pop3",  // not an Int32
        "id=2 master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3 stray",   // a part without '='
        "id=2 master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3 metrics=-1",
        "id=2 master=1234 scoreboard=5 wake=6 listeners=3:plain:pop3 metrics=x",
    ])
    func malformedValuesAreRefused(text: String) {
        #expect(WorkerContext(parsing: text) == nil)
    }

    /// The only test that touches POP3DWORKER (process-wide): unset, malformed, valid.
    @Test func fromEnvironment() throws {
        let name = WorkerContext.environmentName
        defer { unsetenv(name) }
        unsetenv(name)
        #expect(try WorkerContext.fromEnvironment() == nil)
        setenv(name, "id=1 master=1", 1)
        do {
            _ = try WorkerContext.fromEnvironment()
            Issue.record("a malformed POP3DWORKER was accepted")
        } catch let e as ConfigError {
            #expect(e.description.hasPrefix("POP3DWORKER: 'id=1 master=1' is not a worker context"))
        }
        setenv(name, Self.sample.encoded, 1)
        #expect(try WorkerContext.fromEnvironment() == Self.sample)
    }
}

/// The shared table: what one mapping writes, another mapping of the same memfd reads (the
/// master's and a worker's), and descriptors that are not a scoreboard are refused.
@Suite struct ScoreboardTests {
    @Test func aSecondMappingOfTheDescriptorSeesEveryWrite() throws {
        let master = try Scoreboard(creatingFor: 3)
        defer { close(master.fd) }
        let worker = try Scoreboard(inheritedFD: master.fd)
        #expect(worker.workers == 3)

        let slot = worker.slot(2)
        slot.pid = 4321
        slot.state = .serving
        slot[.heartbeat] = 123_456_789_000
        slot[.connections] = 17
        slot[.loggedIn] = 5
        slot[.sessionsServed] = 1_000
        slot[.reloadedGeneration] = 3
        slot[.unauthenticated] = 12
        let seen = master.slot(2)
        #expect(seen.pid == 4321)
        #expect(seen.state == .serving)
        #expect(seen[.heartbeat] == 123_456_789_000)
        #expect(seen[.connections] == 17)
        #expect(seen[.loggedIn] == 5)
        #expect(seen[.sessionsServed] == 1_000)
        #expect(seen[.reloadedGeneration] == 3)
        #expect(seen[.unauthenticated] == 12)
        // Slots are separate: the neighbours saw nothing.
        for other in [1, 3] {
            #expect(master.slot(other)[.connections] == 0)
            #expect(master.slot(other).state == .empty)
        }

        master.requestedReload = 9
        #expect(worker.requestedReload == 9)

        seen.clear()
        #expect(slot.pid == 0 && slot.state == .empty && slot[.connections] == 0 && slot[.heartbeat] == 0)
        #expect(slot[.sessionsServed] == 0 && slot[.reloadedGeneration] == 0 && slot[.unauthenticated] == 0)
    }

    @Test func connectionsExceptSumsTheOtherWorkers() throws {
        let board = try Scoreboard(creatingFor: 4)
        defer { close(board.fd) }
        for (id, count) in [(1, 5), (2, 7), (3, 0), (4, 11)] { board.slot(id)[.connections] = UInt64(count) }
        #expect(board.connections(except: 1) == 18)
        #expect(board.connections(except: 2) == 16)
        #expect(board.connections(except: 4) == 12)
    }

    @Test func workerSharePublishesItsCountAndReadsTheOthers() throws {
        let board = try Scoreboard(creatingFor: 2)
        defer { close(board.fd) }
        let one = WorkerShare(scoreboard: board, id: 1)
        let two = WorkerShare(scoreboard: try Scoreboard(inheritedFD: board.fd), id: 2)
        one.publish(connections: 4, loggedIn: 1, served: 0)
        two.publish(connections: 9, loggedIn: 0, served: 3)
        #expect(one.otherWorkersConnections() == 9)
        #expect(two.otherWorkersConnections() == 4)
        one.publish(connections: -1, loggedIn: -1, served: 0)  // never negative on the board
        #expect(two.otherWorkersConnections() == 0)
    }

    @Test func aPipeIsNotAScoreboard() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        #expect(throws: ConfigError.self) { _ = try Scoreboard(inheritedFD: fds[0]) }
    }

    @Test func aMemfdWithoutTheMagicIsNotAScoreboard() throws {
        let fd = cshim_memfd_create("not-a-scoreboard", Scoreboard.bytes(workers: 2))
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(throws: ConfigError.self) { _ = try Scoreboard(inheritedFD: fd) }
    }

    @Test func aBoardClaimingMoreSlotsThanItsSizeIsRefused() throws {
        let board = try Scoreboard(creatingFor: 1)
        defer { close(board.fd) }
        // A header that says 2 workers in a file sized for 1: the worker would map past its end.
        let raw = try #require(cshim_map_shared(board.fd, Scoreboard.bytes(workers: 1)))
        defer { munmap(raw, Int(Scoreboard.bytes(workers: 1))) }
        cshim_atomic_store_u64(raw.assumingMemoryBound(to: UInt64.self) + 1, 2)
        #expect(throws: ConfigError.self) { _ = try Scoreboard(inheritedFD: board.fd) }
    }
}

/// `workers`, `worker_watchdog_timeout`, `worker_start_limit_burst`, `worker_start_limit_interval`.
@Suite struct WorkerConfigTests {
    @Test func defaults() async throws {
        let c = try await ServerConfig.load(flags: [:], environment: [:], configFile: nil)
        #expect(c.workers == 1)
        #expect(c.workerWatchdogTimeoutSeconds == 10)
        #expect(c.workerStartLimitBurst == 5)
        #expect(c.workerStartLimitIntervalSeconds == 10)
    }

    @Test(arguments: ["auto", "AUTO", " auto "])
    func autoIsTheUsableCPUs(value: String) async throws {
        let c = try await ServerConfig.load(flags: [:], environment: ["POP3D_WORKERS": value], configFile: nil)
        #expect(c.workers == ServerConfig.usableCPUs())
        #expect(c.workers >= 1 && c.workers <= Scoreboard.maxWorkers)
        #expect(c.workers <= max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    @Test func flagWinsOverEnvironmentOverFile() async throws {
        let path = "/tmp/pop3d-workers-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).yaml"
        let text = "workers: 3\nworker_watchdog_timeout: 4\nworker_start_limit_burst: 2\nworker_start_limit_interval: 30\n"
        try #require(text.withCString { s in
            guard let f = fopen(path, "w") else { return false }
            defer { fclose(f) }
            return fputs(s, f) >= 0
        })
        defer { unlink(path) }
        let file = try await ServerConfig.load(flags: [:], environment: [:], configFile: path)
        #expect(file.workers == 3)
        #expect(file.workerWatchdogTimeoutSeconds == 4)
        #expect(file.workerStartLimitBurst == 2)
        #expect(file.workerStartLimitIntervalSeconds == 30)
        let env = try await ServerConfig.load(flags: [:], environment: ["POP3D_WORKERS": "5"], configFile: path)
        #expect(env.workers == 5)
        let flag = try await ServerConfig.load(flags: ["workers": ["auto"]], environment: ["POP3D_WORKERS": "5"], configFile: path)
        #expect(flag.workers == ServerConfig.usableCPUs())
    }

    @Test(arguments: [
        ("POP3D_WORKERS", "0", "workers: 0 is outside 1...1024"),
        ("POP3D_WORKERS", "1025", "workers: 1025 is outside 1...1024"),
        ("POP3D_WORKERS", "-2", "workers: -2 is outside 1...1024"),
        ("POP3D_WORKERS", "many", "workers: 'many' is neither a whole number nor auto"),
        ("POP3D_WORKERS", "2.5", "workers: '2.5' is neither a whole number nor auto"),
        ("POP3D_WORKER_WATCHDOG_TIMEOUT", "0", "worker_watchdog_timeout: 0 is outside 1...3600"),
        ("POP3D_WORKER_WATCHDOG_TIMEOUT", "3601", "worker_watchdog_timeout: 3601 is outside 1...3600"),
        ("POP3D_WORKER_START_LIMIT_BURST", "0", "worker_start_limit_burst: 0 is outside 1...1000"),
        ("POP3D_WORKER_START_LIMIT_BURST", "five", "worker_start_limit_burst: 'five' is not a whole number"),
        ("POP3D_WORKER_START_LIMIT_INTERVAL", "0", "worker_start_limit_interval: 0 is outside 1...3600"),
    ])
    func badValuesGiveErrorsNamingTheKey(env: String, value: String, message: String) async throws {
        let error = await #expect(throws: ConfigError.self) {
            _ = try await ServerConfig.load(flags: [:], environment: [env: value], configFile: nil)
        }
        #expect(error?.description.hasPrefix(message) == true, "\(String(describing: error))")
    }
}

/// `max_connections` per host in a worker: the other workers' counts on the scoreboard count
/// against it (POP3Service.hostShare), and this worker's count is published there.
@Suite(.serialized) struct HostShareTests {
    @Test func otherWorkersConnectionsCountAgainstMaxConnections() throws {
        let board = try Scoreboard(creatingFor: 2)
        defer { close(board.fd) }
        let server = try ServerHarness { config, _ in config.maxConnections = 3 }
        try server.onLoop { side in side.service.hostShare = WorkerShare(scoreboard: board, id: 1) }
        board.slot(2)[.connections] = 2  // the other worker holds two

        let first = try server.client()
        #expect(try first.line().hasPrefix("+OK"))
        #expect(waitFor { board.slot(1)[.connections] == 1 })
        // 1 here + 2 there = 3: the host is full, though this worker holds only one.
        let second = try server.client()
        #expect(try second.line() == "-ERR [SYS/TEMP] Too many connections, try again later")
        #expect(try second.waitForClose())
        #expect(server.logs.contains("connection refused: max_connections (3) reached"))

        board.slot(2)[.connections] = 0  // the other worker's sessions ended
        let third = try server.client()
        #expect(try third.line().hasPrefix("+OK"))
        #expect(waitFor { board.slot(1)[.connections] == 2 })
        #expect(try first.command("QUIT").hasPrefix("+OK"))
        #expect(waitFor { board.slot(1)[.connections] == 1 })
    }
}

/// The limits a worker divides with the others (`max_unauthenticated`, rounded up) and the
/// one it keeps whole (`max_connections`, checked against the host's sum).
@Suite struct WorkerRestartTests {
    /// The first restart is at once ("within a second"); repeated exits back off, never past 1 s.
    @Test func restartDelayBacksOffAndIsBounded() {
        #expect(WorkerMaster.restartDelay(recentExits: 1) == 0)
        #expect(WorkerMaster.restartDelay(recentExits: 2) == 100_000_000)
        #expect(WorkerMaster.restartDelay(recentExits: 3) == 200_000_000)
        #expect(WorkerMaster.restartDelay(recentExits: 5) == 800_000_000)
        #expect(WorkerMaster.restartDelay(recentExits: 6) == WorkerMaster.maxRestartDelayNanoseconds)
        #expect(WorkerMaster.restartDelay(recentExits: 1_000) == WorkerMaster.maxRestartDelayNanoseconds)
    }
}

@Suite struct WorkerLimitsTests {
    @Test(arguments: [(10, 3, 4), (10, 2, 5), (1, 2, 1), (7, 1, 7), (10_000, 16, 625)])
    func maxUnauthenticatedIsDividedRoundingUp(limit: Int, workers: Int, share: Int) throws {
        var config = ServerConfig()
        config.maxUnauthenticated = limit
        config.maxConnections = 100
        // The file says something else (edited after the master started): the master's
        // count, on the scoreboard, is what a worker divides by.
        config.workers = 99
        let board = try Scoreboard(creatingFor: workers)
        defer { close(board.fd) }
        let context = WorkerContext(id: 1, masterPID: getppid(), scoreboardFD: board.fd, wakeFD: 0,
                                    listeners: [.init(fd: 0, implicitTLS: false, name: nil)])
        let runner = try ServerRunner(config: config, logger: Logger(label: "test"), worker: context)
        #expect(runner.config.maxUnauthenticated == share)
        #expect(runner.config.workers == workers)
        #expect(runner.config.maxConnections == 100)
        config.workers = workers
        // The single process of old keeps its limit.
        let single = try ServerRunner(config: config, logger: Logger(label: "test"))
        #expect(single.config.maxUnauthenticated == limit)
    }
}
