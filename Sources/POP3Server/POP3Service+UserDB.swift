import Auth
import Logging
import Reactor
import SQL

/// What a user lookup gave the login path.
enum UserLookup {
    /// `cached`: the entry came from the auth cache (fresh or, during an outage, stale), so a
    /// password that does not match it is worth one fresh lookup.
    case found(UserEntry, cached: Bool)
    case unknown
    /// The user database could not answer: `-ERR [SYS/TEMP]`, never `[AUTH]`.
    case unavailable(String)
}

/// How far a lookup may trust the auth cache.
enum LookupMode {
    /// A fresh cache entry answers; else the database; stale entries while it is down.
    case cached
    /// The database answers; nothing cached is used (the retry after a cached mismatch).
    case fresh
    /// The database answers; a cached entry only while it is down (SCRAM, whose proof cannot
    /// be re-checked against a second entry within one exchange).
    case freshOrStale
}

/// `passdb: sql` (issue 15): the PostgreSQL user database and the auth cache in front of it.
/// With `passwd-file` the lookup is the in-memory table, answered synchronously.
extension POP3Service {
    /// Builds the SQL user database from the configuration (no connection yet: `startUserDatabase`).
    /// - Throws: `ConfigError` when `sql_connect` or `sql_password_query` is missing or refused.
    static func makeUserDatabase(_ config: ServerConfig, loop: EventLoop, logger: Logger) throws -> SQLUserDB {
        guard let query = config.sqlPasswordQuery, !query.isEmpty else {
            throw ConfigError("sql_password_query: required with passdb: sql")
        }
        let info = try config.checkedConnectInfo()
        let db = SQLUserDB(loop: loop, info: info, query: query, connections: config.sqlConnections,
                           timeoutSeconds: Double(config.sqlQueryTimeoutSeconds))
        db.onProblem = { message in logger.error("\(message)") }
        db.pool.onNotice = { message in logger.notice("user database says: \(message)") }
        return db
    }

    /// Opens the user database's connections: after the switch to `user`, so that the
    /// database sees pop3d's user (peer authentication on a Unix socket), not root.
    public func startUserDatabase() {
        guard let db = userDB else { return }
        db.pool.onOutage = { [weak self] reason in
            // Once per outage (per process): the logins refused meanwhile are counted in the
            // recovery line.
            guard let self else { return }
            self.userdbOutageCounts = (0, 0)
            self.logger.warning("user database unavailable: \(reason)")
            self.metrics?.userdbOutages.increment()
        }
        db.pool.onRecovery = { [weak self] seconds, _ in
            guard let self else { return }
            let rounded = (seconds * 10).rounded() / 10
            let (refused, stale) = self.userdbOutageCounts
            self.logger.notice("user database back after \(rounded) s, \(refused) login(s) refused and \(stale) served from the cache meanwhile")
        }
        db.start()
    }

    /// Closes the user database's connections (shutdown).
    public func stopUserDatabase() {
        userDB?.stop()
    }

    /// Looks `name` up in the user database; `completion` runs on the loop (synchronously for
    /// the passwd-file and for cache hits). See `LookupMode` for the cache rules. `abandoned`
    /// tells the pool that the login no longer waits (`PGPool.query`). `beforeQuery` runs when
    /// the database must be asked (not for cache hits); false = do not ask: the completion
    /// then gets `.unavailable` at once (the caller knows why: its per-address quota).
    func lookupUser(_ name: String, mode: LookupMode = .cached, abandoned: (() -> Bool)? = nil,
                    beforeQuery: (() -> Bool)? = nil, _ completion: @escaping (UserLookup) -> Void) {
        guard let db = userDB else {
            return completion(passwd.lookup(name).map { .found($0, cached: false) } ?? .unknown)
        }
        let key = UserName(name)
        if mode == .cached {
            switch authCache.lookup(key, now: loopSeconds) {
            case .found(let entry):
                metrics?.userdbLookups[UserDBResultLabel.cache.index].increment()
                return completion(.found(entry, cached: true))
            case .unknown:
                metrics?.userdbLookups[UserDBResultLabel.cache.index].increment()
                return completion(.unknown)
            case .miss: break
            }
        }
        if let beforeQuery, !beforeQuery() { return completion(.unavailable("refused before the query")) }
        db.lookup(key, abandoned: abandoned) { [weak self] answer in
            guard let self else { return }
            // Not run: nobody waits for it, and it is no outage.
            if case .unavailable(let why) = answer, abandoned?() == true { return completion(.unavailable(why)) }
            // The cache is read again only when the database could not answer: a stale entry
            // matters only then, and the answered lookups (nearly all) skip the table probe.
            let stale = answer.isUnavailable && mode != .fresh ? self.authCache.stale(key) : nil
            self.countLookup(answer, staleUsed: stale != nil)
            switch answer {
            case .found(let entry):
                self.authCache.store(key, entry: entry, now: self.loopSeconds)
                // Unknown users are verified against a secret of the kind real users have.
                if entry.scheme != self.sqlDummy.scheme {
                    self.sqlDummy = UserEntry(user: "", scheme: entry.scheme, encoding: entry.encoding, secret: entry.secret)
                }
                completion(.found(entry, cached: false))
            case .unknown:
                self.authCache.store(key, entry: nil, now: self.loopSeconds)
                completion(.unknown)
            case .unavailable(let why):
                if let stale { return completion(.found(stale, cached: true)) }
                completion(.unavailable(why))
            }
        }
    }

    /// What an unknown user's password is verified against, so that unknown and known users
    /// cost alike: the passwd-file's commonest scheme, or for SQL the scheme of the last user
    /// found (SHA512-CRYPT until one is).
    var dummyEntry: UserEntry { userDB == nil ? passwd.dummy : sqlDummy }

    /// SIGHUP: forget every cached answer (a changed password, a deleted user).
    func clearAuthCache() {
        guard authCache.isEnabled else { return }
        let dropped = authCache.count
        authCache.removeAll()
        logger.info("auth cache emptied", metadata: ["entries": "\(dropped)"])
    }

    var loopSeconds: Double { Double(loop.now) / 1e9 }

    private func countLookup(_ answer: SQLUserDB.Answer, staleUsed: Bool) {
        if case .unavailable = answer {
            if staleUsed { userdbOutageCounts.stale &+= 1 } else { userdbOutageCounts.refused &+= 1 }
        }
        guard let metrics else { return }
        let label: UserDBResultLabel
        switch answer {
        case .found: label = .found
        case .unknown: label = .unknown
        case .unavailable: label = staleUsed ? .stale : .unavailable
        }
        metrics.userdbLookups[label.index].increment()
    }
}

extension ServerConfig {
    /// `sql_connect` checked by `SQL.ConnectInfo` (no DNS names, no `service=`).
    /// - Throws: `ConfigError` naming the problem.
    func checkedConnectInfo() throws -> ConnectInfo {
        guard let text = sqlConnect, !text.isEmpty else {
            throw ConfigError("sql_connect: required with passdb: sql (e.g. 'host=/run/postgresql dbname=mail user=pop3d')")
        }
        do {
            return try ConnectInfo(text)
        } catch {
            throw ConfigError(error.description)
        }
    }
}
