import Auth
import Maildrop
import Logging
import Reactor

/// SIGHUP: the configuration read again (the settings that can change without a restart are
/// applied), the passwd-file parsed off the loop and swapped in, the TLS certificates rebuilt.
extension POP3Service {
    /// Settings a running process cannot take over: the listeners and the user belong to the
    /// start (or to the master), threads are started once, the master's own settings are read
    /// by the master alone. A SIGHUP that changes one logs that it waits for a restart.
    public static let restartOnlyKeys: Set<String> = [
        "listen", "listen_tls", "user", "reuse_port", "auth_workers", "shutdown_timeout",
        "workers", "worker_watchdog_timeout", "worker_start_limit_burst", "worker_start_limit_interval",
        "metrics_listen",
        // The user database's connections and the cache are built at start (issue 15).
        "passdb", "sql_connect", "sql_connections", "sql_query_timeout", "auth_cache_size",
        "auth_cache_ttl", "auth_cache_negative_ttl",
    ]

    /// SIGHUP: reads the configuration (when `configSource` is set), the passwd-file and the
    /// certificates again; whatever is broken keeps the old one and the log says why.
    /// `completion` runs on the loop once the new passwd-file is in use (or was refused):
    /// the READY=1 after RELOADING=1 waits for it (a master: for every worker's). SIGHUPs
    /// during a reload are coalesced into one more reload after it.
    public func reload(completion: (() -> Void)? = nil) {
        if let completion { reloadCompletions.append(completion) }
        if reloadRunning {
            reloadAgain = true
            logger.info("reload already running: another follows it", metadata: ["path": "\(config.passwdFile ?? "-")"])
            return
        }
        startReload()
    }

    private func startReload() {
        reloadRunning = true
        guard let source = configSource else { return reloadPasswdAndCertificates() }
        // swift-configuration reads the YAML file: file I/O, never on the loop.
        let submitted = reloadPool.submit({ ConfigLoad(result: Result { try source() }) }) { [weak self] loaded in
            self?.configLoaded(loaded)
        }
        if case .queued = submitted {} else {
            logger.error("configuration reload could not start (\(submitted)), keeping the old one")
            reloadPasswdAndCertificates()
        }
    }

    private func configLoaded(_ loaded: ConfigLoad) {
        switch loaded.result {
        case .success(let new):
            do {
                try applyReloaded(new)
            } catch {
                logger.error("configuration reload refused, keeping the old one: \(error)")
            }
        case .failure(let error):
            logger.error("configuration reload failed, keeping the old one: \(error)")
        }
        reloadPasswdAndCertificates()
    }

    /// Takes over every setting of `new` but the `restartOnlyKeys` (those that changed are
    /// logged). Values derived at start (mail location, networks, quotas, log level, loop
    /// settings) are rebuilt; a derived value that does not parse throws and nothing changes.
    /// Settings fixed when a session starts (its timeouts, its output limit) apply to sessions
    /// that start after the reload.
    func applyReloaded(_ new: ServerConfig) throws {
        var merged = new
        let old = config
        let differing = Self.changedKeys(old, new)
        let waiting = differing.filter { Self.restartOnlyKeys.contains($0) }
        // Restart-only values stay as they are.
        merged.listen = old.listen
        merged.listenTLS = old.listenTLS
        merged.user = old.user
        merged.reusePort = old.reusePort
        merged.authWorkers = old.authWorkers
        merged.shutdownTimeoutSeconds = old.shutdownTimeoutSeconds
        merged.workers = old.workers
        merged.workerWatchdogTimeoutSeconds = old.workerWatchdogTimeoutSeconds
        merged.workerStartLimitBurst = old.workerStartLimitBurst
        merged.workerStartLimitIntervalSeconds = old.workerStartLimitIntervalSeconds
        merged.metricsListen = old.metricsListen
        merged.passdb = old.passdb
        merged.sqlConnect = old.sqlConnect
        merged.sqlConnections = old.sqlConnections
        merged.sqlQueryTimeoutSeconds = old.sqlQueryTimeoutSeconds
        merged.authCacheSize = old.authCacheSize
        merged.authCacheTTLSeconds = old.authCacheTTLSeconds
        merged.authCacheNegativeTTLSeconds = old.authCacheNegativeTTLSeconds
        guard let mail = merged.mail else { throw ConfigError("mail: required") }
        let newLocation: MailLocation
        do {
            newLocation = try MailLocation(template: mail)
        } catch {
            throw ConfigError("mail: '\(mail)': \(error)")
        }
        let (newTrusted, invalid) = CIDRTable.parse(merged.trustedNetworks)
        if let bad = invalid.first { throw ConfigError("trusted_networks: '\(bad)' is not an address or CIDR") }
        let (newProxies, invalidProxies) = CIDRTable.parse(merged.proxyNetworks)
        if let bad = invalidProxies.first { throw ConfigError("proxy_networks: '\(bad)' is not an address or CIDR") }
        guard merged.passdb == .sql || merged.passwdFile != nil else { throw ConfigError("passwd_file: required") }
        if merged.passdb == .sql {
            guard let query = merged.sqlPasswordQuery, !query.isEmpty else {
                throw ConfigError("sql_password_query: required with passdb: sql")
            }
        }

        config = merged
        if let db = userDB, let query = merged.sqlPasswordQuery { db.query = query }
        location = newLocation
        trusted = newTrusted
        penalties.trusted = newTrusted
        authQuota.update(limit: merged.authMaxQueuedPerIP, trusted: newTrusted)
        proxyNetworks = newProxies
        hostname = merged.hostname ?? Self.systemHostname()
        implementation = merged.announceImplementation ? "pop3d \(pop3dVersion)" : nil
        loop.handshakeStepsPerTurn = merged.tlsHandshakesPerTurn
        loop.loopLagWarningNanoseconds = UInt64(merged.loopLagWarningMilliseconds) * 1_000_000
        if let level = Logger.Level(rawValue: merged.logLevel) { SharedLogLevel.process.level = level }
        let applied = differing.filter { !Self.restartOnlyKeys.contains($0) }
        logger.info("configuration reloaded", metadata: [
            "changed": "\(applied.isEmpty ? "none" : applied.joined(separator: ","))",
        ])
        if !waiting.isEmpty {
            logger.warning("configuration reload: \(waiting.joined(separator: ", ")) changed but take effect only after a restart")
        }
    }

    /// The configuration keys whose values differ between `a` and `b` (in the order of
    /// `ServerConfig.keys`).
    static func changedKeys(_ a: ServerConfig, _ b: ServerConfig) -> [String] {
        let left = Mirror(reflecting: a).children
        let right = Dictionary(uniqueKeysWithValues: Mirror(reflecting: b).children.compactMap { child in
            child.label.map { ($0, "\(child.value)") }
        })
        var changed: Set<String> = []
        for child in left {
            guard let label = child.label, right[label] != "\(child.value)" else { continue }
            changed.insert(configKey(forProperty: label))
        }
        return ServerConfig.keys.filter { changed.contains($0) }
    }

    /// `idleTimeoutSeconds` → `idle_timeout`, `maxConnectionsPerIP` → `max_connections_per_ip`.
    static func configKey(forProperty name: String) -> String {
        if name == "announceImplementation" { return "implementation" }
        var base = name
        for suffix in ["Seconds", "Milliseconds"] where base.hasSuffix(suffix) { base.removeLast(suffix.count) }
        var key = ""
        var previousUpper = false
        for ch in base {
            if ch.isUppercase {
                if !previousUpper && !key.isEmpty { key += "_" }
                key += ch.lowercased()
                previousUpper = true
            } else {
                key.append(ch)
                previousUpper = false
            }
        }
        return key
    }

    private func reloadPasswdAndCertificates() {
        if !config.tlsCert.isEmpty {
            do {
                tls = try TLSState(config)
                logger.info("TLS certificates reloaded")
            } catch {
                logger.error("TLS certificate reload failed, keeping the old ones: \(error)")
            }
        }
        reloadPasswdFile()
    }

    /// Parses the passwd-file on `reloadPool` (a million lines take seconds: never on the
    /// loop); the loop swaps the new table in when it is done. A file that cannot be read, is
    /// not a regular file (a FIFO would block) or has no valid user keeps the old table, and
    /// the log says why.
    private func reloadPasswdFile() {
        if userDB != nil {
            // passdb sql: nothing to read; the cache is emptied so that changed passwords and
            // removed users are asked from the database again.
            clearAuthCache()
            return reloadEnded()
        }
        guard let path = config.passwdFile else { return reloadEnded() }
        let mechanisms = config.authMechanisms
        let submitted = reloadPool.submit({ PasswdLoad(path: path, mechanisms: mechanisms) }) { [weak self] loaded in
            self?.passwdLoaded(loaded, path: path)
        }
        if case .queued = submitted {} else {
            logger.error("passwd-file reload could not start (\(submitted)), keeping the old one")
            reloadEnded()
        }
    }

    /// One reload is over: run the coalesced next one, or tell the waiters.
    private func reloadEnded() {
        reloadRunning = false
        if reloadAgain {
            reloadAgain = false
            startReload()
        } else {
            finishReload()
        }
    }

    /// Runs the completions of every reload asked for so far (none is left waiting).
    func finishReload() {
        let waiting = reloadCompletions
        reloadCompletions = []
        for completion in waiting { completion() }
    }

    func passwdLoaded(_ loaded: PasswdLoad, path: String) {
        switch loaded.result {
        case .success(let (file, diagnostics)):
            Self.logPasswdDiagnostics(diagnostics, logger: logger)
            if file.count == 0 {
                logger.error("passwd-file reload: no valid user in the new file, keeping the old one",
                             metadata: ["path": "\(path)", "users": "\(passwd.count)"])
            } else {
                // Freeing a table of a million users takes a good part of a second: the old
                // one is released on a storage thread, not here on the loop.
                let old = passwd
                passwd = file
                _ = storagePool.submit({ withExtendedLifetime(old) {} }) { _ in }
                logger.info("passwd-file reloaded", metadata: ["path": "\(path)", "users": "\(file.count)"])
                for line in loaded.mechanismWarnings { logger.warning("\(line)") }
            }
        case .failure(let error):
            logger.error("passwd-file reload failed, keeping the old one: \(error)")
        }
        reloadEnded()
    }

    static func logPasswdDiagnostics(_ diagnostics: [Diagnostic], logger: Logger) {
        for d in diagnostics.prefix(maxPasswdWarningsLogged) { logger.warning("passwd-file: \(d)") }
        if diagnostics.count > maxPasswdWarningsLogged {
            logger.warning("passwd-file: \(diagnostics.count - maxPasswdWarningsLogged) more problem line(s) not shown")
        }
    }
}

/// The configuration read again on `reloadPool`, handed to the loop.
struct ConfigLoad: Sendable {
    let result: Result<ServerConfig, any Error>
}

/// A passwd-file read and parsed on `reloadPool`, handed to the loop.
struct PasswdLoad: Sendable {
    let result: Result<(PasswdFile, [Diagnostic]), any Error>
    /// `auth_mechanisms` warnings for the new file: counting users by scheme is O(users), so
    /// it is done here on the worker too, not on the loop.
    let mechanismWarnings: [String]

    init(path: String, mechanisms: [AuthMechanism]) {
        result = Result { try PasswdFile.load(path: path) }
        if case .success(let (file, _)) = result {
            mechanismWarnings = AuthMechanism.warnings(enabled: mechanisms, usersByScheme: file.usersByScheme)
        } else {
            mechanismWarnings = []
        }
    }
}
