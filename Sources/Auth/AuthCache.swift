import SystemCalls

/// Remembers the answers of a user database that costs a round trip (PostgreSQL, issue 15),
/// like Dovecot's `auth_cache_*`: a found user for `ttl` seconds, an unknown one for
/// `negativeTTL` seconds, at most `capacity` users (the least recently used one is forgotten
/// first; `LRUTable`, O(1) per operation).
///
/// What is kept is the database's answer (the stored secret and the user's fields), never a
/// password a client sent: verification still runs on every login, so a wrong password is
/// never let in by the cache. An expired entry is not deleted at once: `stale(_:)` still finds
/// it, for serving logins while the database is unreachable (the failure rule).
///
/// Pure and loop-thread only; time comes from the caller (monotonic seconds), so tests drive
/// the clock.
public struct AuthCache {
    /// A found user (`entry`), or a name the database did not know (`nil`).
    public struct Answer: Sendable, Equatable {
        /// The user's entry as the database returned it; nil when the name was unknown to it.
        public var entry: UserEntry?
        /// Monotonic seconds when it was fetched.
        public var fetched: Double
    }

    /// What `lookup(_:now:)` answers for a name.
    public enum Lookup: Equatable {
        /// Fresh: use it without asking the database.
        case found(UserEntry)
        /// Fresh: the database did not know the name (`negativeTTL`); fail without asking it.
        case unknown
        /// Not cached, expired, or the cache is off: ask the database.
        case miss
    }

    /// Users remembered at most; 0 turns the cache off.
    public let capacity: Int
    /// Seconds a found user is served without asking again (`auth_cache_ttl`).
    public let ttl: Double
    /// Seconds an unknown name is answered "unknown" without asking again
    /// (`auth_cache_negative_ttl`).
    public let negativeTTL: Double
    private var table: LRUTable<UserName, Answer>?
    /// Counters for metrics and tests.
    public private(set) var hits = 0
    /// Lookups that had to ask the database (absent, expired, or cache off).
    public private(set) var misses = 0

    /// A cache of at most `capacity` users (0 or less: off), found users kept fresh for `ttl`
    /// seconds, unknown names for `negativeTTL` seconds.
    public init(capacity: Int, ttl: Double, negativeTTL: Double) {
        self.capacity = max(0, capacity)
        self.ttl = ttl
        self.negativeTTL = negativeTTL
        table = capacity > 0 ? LRUTable(capacity: capacity) : nil
    }

    /// False when `capacity` is 0: every `lookup` is a `.miss` and nothing is stored.
    public var isEnabled: Bool { table != nil }
    /// Answers held now, fresh or expired.
    public var count: Int { table?.count ?? 0 }

    /// The fresh answer for `user`, or `.miss`. An expired answer is kept (for `stale`).
    public mutating func lookup(_ user: UserName, now: Double) -> Lookup {
        guard let answer = table?.value(forKey: user) else { misses &+= 1; return .miss }
        let age = now - answer.fetched
        let limit = answer.entry == nil ? negativeTTL : ttl
        guard age >= 0, age < limit else { misses &+= 1; return .miss }
        hits &+= 1
        return answer.entry.map { .found($0) } ?? .unknown
    }

    /// The last found entry for `user` whatever its age: used only while the database cannot
    /// answer. A remembered "unknown" is not served stale (it may have been created since,
    /// and a refusal costs the user nothing more than the `[SYS/TEMP]` it would get).
    public func stale(_ user: UserName) -> UserEntry? {
        table?.peek(user)?.entry
    }

    /// Records the database's answer (`nil` = no such user).
    public mutating func store(_ user: UserName, entry: UserEntry?, now: Double) {
        table?.updateValue(Answer(entry: entry, fetched: now), forKey: user)
    }

    /// Forgets `user` (a fresh lookup found the row gone).
    public mutating func remove(_ user: UserName) {
        table?.removeValue(forKey: user)
    }

    /// Forgets everyone (SIGHUP).
    public mutating func removeAll() {
        if table != nil { table = LRUTable(capacity: capacity) }
    }
}
