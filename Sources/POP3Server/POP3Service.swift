import Auth
import Glibc
import Logging
import Maildrop
import POP3
import Reactor
import SQL

/// What one pop3d process shares between its sessions: configuration, the user database,
/// the hashing pool, limits and counters. Lives on the loop thread.
public final class POP3Service {
    /// Commands handled for one connection before others get a turn (pipelining fairness).
    public static let maxCommandsPerTurn = 32
    /// Bytes read from a message file at a time while streaming RETR/TOP.
    public static let streamChunkBytes = 64 * 1024
    /// Bytes of a LIST/UIDL listing produced per step.
    public static let listingChunkBytes = 16 * 1024
    /// Threads that open maildrops.
    public static let storageWorkers = 2
    /// Maildrop opens waiting for a storage thread; beyond it a login gets `-ERR [SYS/TEMP]`.
    public static let maxQueuedStorageJobs = 65_536
    /// passwd-file problems logged one by one at start and on reload; the rest are counted in
    /// one line, so a broken million-line file cannot flood the log (or the loop).
    public static let maxPasswdWarningsLogged = 100

    let loop: EventLoop
    /// The configuration in force; a SIGHUP reload replaces the settings it may change.
    public internal(set) var config: ServerConfig {
        didSet { sessionMechanisms = Self.sessionMechanisms(config) }
    }
    /// What every new session takes from `config.authMechanisms`, computed once per
    /// configuration rather than once per connection (issue 17): the SASL mechanisms offered,
    /// and whether the APOP timestamp is used at all (APOP's greeting, RFC 1939 §7, and the
    /// CRAM-MD5 challenge built from it, RFC 2195 §2). Without either, no timestamp is formatted.
    private var sessionMechanisms: (sasl: [SASLMechanism], usesTimestamp: Bool)
    var logger: Logger
    /// The session-end line's writer (`SessionSummary`): bytes into `LogBatch` under the
    /// process's `StderrLogHandler`, metadata through `logger` under any other handler.
    let sessionEndLog: SessionEndLog
    /// Replaced whole by a reload (POP3Service+Reload.swift).
    var passwd: PasswdFile
    /// `passdb: sql`: the PostgreSQL user database (POP3Service+UserDB.swift); nil for the
    /// passwd-file.
    var userDB: SQLUserDB?
    /// Answers of `userDB`, `auth_cache_*` (emptied by SIGHUP).
    var authCache: AuthCache
    /// Logins refused with `[SYS/TEMP]` and served from stale cache entries since the user
    /// database's outage began (its recovery line reports them).
    var userdbOutageCounts = (refused: 0, stale: 0)
    /// `dummyEntry` for SQL: follows the scheme of the last user found.
    var sqlDummy = UserEntry(user: "", scheme: .sha512Crypt, secret: Array(PasswdFile.defaultDummyCrypt.utf8))
    // Derived from `config`; rebuilt by a reload (POP3Service+Reload.swift).
    var location: MailLocation
    var trusted: CIDRTable
    let penalties: FailurePenalty
    /// `proxy_networks`: peers whose connections start with a PROXY header.
    var proxyNetworks: CIDRTable
    /// Connections from `proxy_networks` whose header has not arrived yet (POP3Service+Proxy.swift).
    var pendingProxyHeaders: [ObjectIdentifier: ProxyHeaderWait] = [:]
    private(set) var pool: WorkerPool!
    /// Threads that open and list maildrops (directory scans, first-login size counting).
    private(set) var storagePool: WorkerPool!
    private var waker: Waker?
    var hostname: String
    var implementation: String?
    /// The TLS state for new connections (STLS and implicit TLS); nil when not configured.
    var tls: TLSState?

    /// Shared read buffer for message streaming: one per loop, never per connection.
    let streamBuffer: UnsafeMutableRawBufferPointer

    // Live counts, for limits and systemd STATUS=.
    /// Sessions open now, counted against `max_connections` (a connection waiting for its PROXY
    /// header counts once the header has come and the limits admitted it).
    public private(set) var connectionCount = 0
    /// Connections not yet logged in (`max_unauthenticated` counts them).
    public var unauthenticatedCount: Int { preLogin.count }
    /// Sessions past login (TRANSACTION and UPDATE states).
    public private(set) var loggedInCount = 0
    /// Sessions in the UPDATE state (removing messages after QUIT), for `pop3d_sessions`.
    var updatingCount = 0
    /// This process's metrics; nil when they are off (`enableMetrics`).
    public internal(set) var metrics: POP3Metrics?
    /// Sessions ended since start.
    public private(set) var sessionsServed = 0
    private var perAddress: [IPAddress: Int] = [:]
    /// Hashes queued or running per client address (`auth_max_queued_per_ip`).
    let authQuota: AddressQuota
    /// One thread that parses the passwd-file on SIGHUP, so the loop never does.
    var reloadPool: WorkerPool!
    /// A passwd-file parse is running on `reloadPool`.
    var reloadRunning = false
    /// A SIGHUP came while one ran: reload again when it ends (any number coalesce into one).
    var reloadAgain = false
    /// Reads the configuration again on SIGHUP (flags, environment, file, as at start); nil:
    /// a reload reads only the passwd-file and certificates (tests, `pop3d demo`).
    public var configSource: (@Sendable () throws -> ServerConfig)?
    /// Waiting for the passwd-file reload under way (`reload(completion:)`).
    var reloadCompletions: [() -> Void] = []
    /// Set in a worker of a master: where this worker publishes its connection count and
    /// reads the other workers' (`max_connections` is per host).
    public var hostShare: WorkerShare?
    /// Set in a worker whose descriptor limit carries fewer sessions than `max_connections`:
    /// at this many connections the worker stops accepting (`EventLoop.holdAccepting`) so
    /// the kernel gives new clients to another worker, instead of taking sessions whose
    /// maildrop it then cannot open (EMFILE). It accepts again 1 % below.
    public var acceptCapacity: Int?
    private var acceptsHeld = false
    /// Connections not yet logged in, oldest first (POP3Service+PreLogin.swift).
    var preLogin = PreLoginQueue()
    /// The one `login_timeout` timer, armed for the oldest pre-login connection.
    var loginDeadlineTimer: TimerID?
    private var apopCounter: UInt64 = 0
    private let pid = getpid()
    private(set) var sessions: [ObjectIdentifier: POP3Connection] = [:]
    /// Set by `drain()`: sessions close as soon as they are between commands.
    public private(set) var isDraining = false
    /// Called when the last session of a drain has ended.
    public var onDrained: (() -> Void)?

    /// A service with the configuration's user database, mail location, networks and TLS ready,
    /// and its worker pools started; listeners are attached separately.
    /// - Throws: `ConfigError` for a setting that cannot be used (`mail`, `trusted_networks`,
    ///   `proxy_networks`, `passwd_file`, TLS files, the SQL settings), or the `SyscallError` of
    ///   the loop's eventfd.
    public init(config: ServerConfig, loop: EventLoop, logger: Logger) throws {
        self.config = config
        sessionMechanisms = Self.sessionMechanisms(config)
        self.loop = loop
        self.logger = logger
        sessionEndLog = SessionEndLog(logger: logger)
        // The session-end lines of a turn go out in one write, after the turn's output was
        // flushed (sessions that closed once their last reply drained are in it).
        loop.addEndOfTurnHook { LogBatch.standardError.flush() }
        loop.handshakeStepsPerTurn = config.tlsHandshakesPerTurn
        loop.loopLagWarningNanoseconds = UInt64(config.loopLagWarningMilliseconds) * 1_000_000
        guard let mail = config.mail else {
            throw ConfigError("mail: required (--mail 'maildir:/srv/mail/%u/Maildir')")
        }
        do {
            location = try MailLocation(template: mail)
        } catch {
            throw ConfigError("mail: '\(mail)': \(error)")
        }
        let (table, invalid) = CIDRTable.parse(config.trustedNetworks)
        if let bad = invalid.first {
            throw ConfigError("trusted_networks: '\(bad)' is not an address or CIDR")
        }
        trusted = table
        let (proxies, invalidProxies) = CIDRTable.parse(config.proxyNetworks)
        if let bad = invalidProxies.first {
            throw ConfigError("proxy_networks: '\(bad)' is not an address or CIDR")
        }
        proxyNetworks = proxies
        penalties = FailurePenalty(trusted: table)
        authQuota = AddressQuota(limit: config.authMaxQueuedPerIP, trusted: table)
        authCache = AuthCache(capacity: config.authCacheSize, ttl: Double(config.authCacheTTLSeconds),
                              negativeTTL: Double(config.authCacheNegativeTTLSeconds))
        switch config.passdb {
        case .sql:
            passwd = PasswdFile.parse([], path: "-").0
            userDB = try Self.makeUserDatabase(config, loop: loop, logger: logger)
            if let path = config.passwdFile {
                logger.warning("passwd_file \(path) is ignored: passdb is sql")
            }
            // The secrets' schemes are not known at start: say once what each offered
            // mechanism needs (the passwd-file gets a count per scheme instead).
            let needy = config.authMechanisms.filter { $0 == .cramMD5 || $0 == .apop || $0 == .scramSHA256 }
            if !needy.isEmpty {
                logger.notice("auth_mechanisms \(needy.map(\.rawValue).joined(separator: ", ")) with passdb sql: cram-md5 and apop work only for users whose password column holds a {PLAIN} secret, scram-sha-256 only for {PLAIN} or {SCRAM-SHA-256}; other users get [AUTH] by them")
            }
            logger.info("passdb sql", metadata: ["connections": "\(config.sqlConnections)",
                                                 "auth_cache_size": "\(config.authCacheSize)"])
        case .passwdFile:
            guard let passwdPath = config.passwdFile else {
                throw ConfigError("passwd_file: required (--passwd-file FILE), or passdb: sql")
            }
            do {
                // At start the loop is not serving anyone yet: parsing here delays only the start.
                let (file, diagnostics) = try PasswdFile.load(path: passwdPath)
                passwd = file
                Self.logPasswdDiagnostics(diagnostics, logger: logger)
                logger.info("passwd-file loaded", metadata: ["path": "\(passwdPath)", "users": "\(file.count)"])
                Self.warnAboutMechanisms(file, enabled: config.authMechanisms, logger: logger)
                if file.count == 0 { logger.warning("passwd-file \(passwdPath) has no valid user: nobody can log in") }
            } catch {
                throw ConfigError("passwd_file: \(error)")
            }
        }
        hostname = config.hostname ?? Self.systemHostname()
        implementation = config.announceImplementation ? "pop3d \(pop3dVersion)" : nil
        streamBuffer = .allocate(byteCount: Self.streamChunkBytes, alignment: 16)
        if !config.tlsCert.isEmpty {
            tls = try TLSState(config)
        }
        let waker = try loop.makeWaker { [weak self] in
            self?.pool.drainCompletions()
            self?.storagePool.drainCompletions()
            self?.reloadPool.drainCompletions()
        }
        self.waker = waker
        pool = WorkerPool(threads: config.authWorkers, notify: { waker.wake() })
        // Separate from the hashing pool, so a burst of bcrypt logins never delays the
        // listing of an already authenticated user.
        storagePool = WorkerPool(threads: Self.storageWorkers, maxQueuedJobs: Self.maxQueuedStorageJobs, notify: { waker.wake() })
        reloadPool = WorkerPool(threads: 1, maxQueuedJobs: 1, notify: { waker.wake() })
        if config.idleTimeoutSeconds < 600 {
            logger.warning("idle_timeout \(config.idleTimeoutSeconds) s is below RFC 1939's minimum of 10 minutes")
        }
    }

    deinit {
        // Sessions still open hold the service `unowned(unsafe)` (POP3Connection.service):
        // close their connections without callbacks (no delegate), so they are freed with the
        // tables below and nothing calls back into the freed service. A connection whose loop
        // is gone is closed already (Connection.detachFromLoop) and ignores the close.
        while let waiting = preLogin.oldest { preLogin.remove(waiting) }
        for session in sessions.values {
            session.connection.delegate = nil
            session.connection.close(flushFirst: false)
        }
        for wait in pendingProxyHeaders.values {
            wait.connection.delegate = nil
            wait.connection.close(flushFirst: false)
        }
        pool?.shutdown()
        storagePool?.shutdown()
        reloadPool?.shutdown()
        streamBuffer.deallocate()
    }

    // MARK: accepting

    /// A new client socket from a listener: limits first, then a session. A socket from
    /// `proxy_networks` first reads its PROXY header (POP3Service+Proxy.swift), and the limits
    /// apply to the address the header gives.
    public func accept(_ socket: AcceptedSocket, implicitTLS: Bool) {
        metrics?.accepted(implicitTLS: implicitTLS)
        let address = IPAddress(bytes: socket.peer.addressBytes)
        if let address, !proxyNetworks.networks.isEmpty, proxyNetworks.contains(address) {
            acceptFromBalancer(socket, implicitTLS: implicitTLS)
            return
        }
        guard let (connection, tlsTransport) = makeConnection(socket, implicitTLS: implicitTLS, peerKey: "client") else {
            return
        }
        startSession(connection, address: address, implicitTLS: implicitTLS, tlsTransport: tlsTransport, proxy: nil)
    }

    /// The limits, then the session, for `address` (the PROXY header's client when `proxy`).
    func startSession(_ connection: Connection, address: IPAddress?, implicitTLS: Bool,
                      tlsTransport: TLSTransport?, proxy: ProxiedClient?) {
        // Formatted only for a log line: no string per accepted connection.
        func clientName() -> String { proxy?.clientName ?? "\(connection.peer)" }
        if let (refusal, reason) = limitRefusal(address) {
            metrics?.refused(reason)
            var metadata: Logger.Metadata = ["client": "\(clientName())"]
            if proxy != nil { metadata["proxy"] = "\(connection.peer)" }
            logger.notice("connection refused: \(refusal)", metadata: metadata)
            connection.write("-ERR [SYS/TEMP] Too many connections, try again later\r\n")
            connection.close(flushFirst: true)
            return
        }
        // max_unauthenticated full: the oldest pre-login connection makes room (Dovecot's
        // "Connection queue full"), so idle connections cannot keep real users out.
        if preLogin.count >= config.maxUnauthenticated { evictOldestPreLogin(for: clientName()) }
        connectionCount += 1
        hostShare?.publish(connections: connectionCount, loggedIn: loggedInCount, served: sessionsServed)
        if let capacity = acceptCapacity, connectionCount >= capacity, !acceptsHeld,
           hostShare?.anotherWorkerHasRoom(capacity: capacity) == true {
            // Another worker has room: leave it the new clients. When none has, this worker
            // goes on accepting and refuses them (`limitRefusal`), rather than leaving them
            // waiting in the kernel's queue for a greeting that never comes.
            acceptsHeld = true
            loop.holdAccepting()
            logger.notice("descriptor limit: \(connectionCount) connections are what this process's RLIMIT_NOFILE carries; accepting resumes when sessions end")
        }
        if let address { perAddress[address, default: 0] += 1 }
        let session = POP3Connection(service: self, connection: connection, address: address,
                                     implicitTLS: implicitTLS, proxy: proxy)
        sessions[ObjectIdentifier(session)] = session
        preLoginStarted(session)
        if let tlsTransport { session.watchHandshake(tlsTransport) }
        session.start()
    }

    private func limitRefusal(_ address: IPAddress?) -> (String, RefusalReason)? {
        if isDraining { return ("shutting down", .shuttingDown) }
        if let capacity = acceptCapacity, connectionCount >= capacity {
            return ("descriptor limit (\(capacity) connections per worker) reached on every worker", .descriptorLimit)
        }
        let onHost = connectionCount &+ (hostShare?.otherWorkersConnections() ?? 0)
        if onHost >= config.maxConnections { return ("max_connections (\(config.maxConnections)) reached", .totalCap) }
        // max_unauthenticated evicts instead of refusing (accept). trusted_networks are exempt
        // from the per-address cap: a webmail host or a proxy speaks for many users; so are the
        // load balancers of proxy_networks (a connection whose header named no client).
        if let address, perAddress[address, default: 0] >= config.maxConnectionsPerIP, !trusted.contains(address),
           !proxyNetworks.contains(address) {
            return ("max_connections_per_ip (\(config.maxConnectionsPerIP)) reached", .perAddressCap)
        }
        return nil
    }

    // MARK: per-session bookkeeping (called by POP3Connection)

    func makeSessionConfig(address: IPAddress?, local: IPAddress?, tlsActive: Bool, stlsAvailable: Bool) -> SessionConfig {
        apopCounter &+= 1
        let timestamp = sessionMechanisms.usesTimestamp ? "<\(pid).\(apopCounter).\(time(nil))@\(hostname)>" : ""
        let plaintext = !config.disablePlaintextAuth || tlsActive || isSecured(address, local: local)
        // Only the enabled mechanisms (auth_mechanisms). The session hides plaintext ones itself
        // while plaintext is refused, and shows them again after STLS: filtering those here
        // would lose them for good.
        let mechanisms = sessionMechanisms.sasl
        return SessionConfig(
            banner: "POP3 server ready",
            apopTimestamp: timestamp,
            implementation: implementation,
            expire: config.expire,
            loginDelaySeconds: config.loginDelaySeconds,
            stlsAvailable: stlsAvailable,
            tlsActive: tlsActive,
            plaintextAuthAllowed: plaintext,
            saslMechanisms: mechanisms,
            maxBadCommands: config.maxBadCommands,
            maxAuthFailures: config.maxAuthFailures,
            apopEnabled: config.authMechanisms.contains(.apop),
            lastEnabled: config.pop3EnableLast,
            clientWorkarounds: config.pop3ClientWorkarounds)
    }

    private static func sessionMechanisms(_ config: ServerConfig) -> (sasl: [SASLMechanism], usesTimestamp: Bool) {
        (config.authMechanisms.compactMap(\.sasl),
         config.authMechanisms.contains(.apop) || config.authMechanisms.contains(.cramMD5))
    }

    /// Dovecot's rule for `disable_plaintext_auth`: a connection is secured when the client is
    /// this host talking to itself (client address == server address) or in a trusted network.
    /// A second loopback address (client 127.0.0.1 → server 127.0.0.2) is therefore not secured,
    /// which is how the tests exercise the refusal without leaving the machine.
    func isSecured(_ address: IPAddress?, local: IPAddress?) -> Bool {
        guard let address else { return false }
        return address == local || trusted.contains(address)
    }

    func sessionLoggedIn(_ session: POP3Connection, user: String) {
        preLogin.remove(session)
        loggedInCount += 1
        hostShare?.publish(connections: connectionCount, loggedIn: loggedInCount, served: sessionsServed)
    }

    func sessionEnded(_ session: POP3Connection, wasLoggedIn: Bool) {
        sessions.removeValue(forKey: ObjectIdentifier(session))
        connectionCount -= 1
        sessionsServed += 1
        if wasLoggedIn { loggedInCount -= 1 }
        hostShare?.publish(connections: connectionCount, loggedIn: loggedInCount, served: sessionsServed)
        if acceptsHeld, let capacity = acceptCapacity, connectionCount < capacity - max(1, capacity / 100) {
            acceptsHeld = false
            loop.releaseAccepting()
            logger.notice("accepting again: \(connectionCount) connections")
        }
        preLogin.remove(session)
        if let address = session.address {
            let left = perAddress[address, default: 1] - 1
            if left <= 0 { perAddress.removeValue(forKey: address) } else { perAddress[address] = left }
        }
        if isDraining && connectionCount == 0 { onDrained?() }
    }

    // MARK: drain

    /// SIGTERM: refuse new sessions, close the ones waiting for a command now and the busy
    /// ones as soon as their command is done. `onDrained` fires when none is left.
    public func drain() {
        isDraining = true
        closePendingProxyHeaders()
        for session in Array(sessions.values) { session.closeIfIdle() }
        if connectionCount == 0 { onDrained?() }
    }

    /// Shutdown timeout passed: close whatever is left, without UPDATE.
    public func closeAll() {
        closePendingProxyHeaders()
        for session in Array(sessions.values) { session.abort(.shutdownTimeout) }
    }

    static func systemHostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let name = String(decoding: bytes, as: UTF8.self)
        // The APOP timestamp is msg-id shaped: keep it free of spaces and brackets.
        let clean = name.filter { $0 != " " && $0 != "<" && $0 != ">" && $0 != "@" }
        return clean.isEmpty ? "localhost" : clean
    }
}

/// The version announced in CAPA IMPLEMENTATION and `pop3d --version`.
public let pop3dVersion = "0.1.0"
