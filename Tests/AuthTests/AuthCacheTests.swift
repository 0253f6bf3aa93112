import Testing
@testable import Auth

/// The auth cache in front of the SQL user database (issue 15): TTLs on an injected clock,
/// stale entries for outages, LRU capacity, SIGHUP's removeAll, 0 = off.
@Suite struct AuthCacheTests {
    static func entry(_ user: String, _ password: String = "secret") -> UserEntry {
        UserEntry(user: user, scheme: .plain, secret: Array(password.utf8), home: "/srv/mail/\(user)")
    }

    @Test func aFoundUserIsFreshForTTLSecondsThenAMissButStillStale() {
        var cache = AuthCache(capacity: 10, ttl: 3600, negativeTTL: 600)
        let alice = UserName("alice@example.org")
        #expect(cache.lookup(alice, now: 100) == .miss, "nothing stored yet")
        cache.store(alice, entry: Self.entry("alice@example.org"), now: 100)
        #expect(cache.lookup(alice, now: 100) == .found(Self.entry("alice@example.org")))
        #expect(cache.lookup(alice, now: 100 + 3599.9) == .found(Self.entry("alice@example.org")))
        // At exactly ttl seconds the answer is too old: ask the database.
        #expect(cache.lookup(alice, now: 100 + 3600) == .miss)
        #expect(cache.lookup(alice, now: 100 + 86_400) == .miss)
        // The expired entry is kept for outages.
        #expect(cache.stale(alice) == Self.entry("alice@example.org"))
        #expect(cache.count == 1)
        // A fresh answer replaces it and is fresh again.
        cache.store(alice, entry: Self.entry("alice@example.org", "changed"), now: 90_000)
        #expect(cache.lookup(alice, now: 90_001) == .found(Self.entry("alice@example.org", "changed")))
        #expect(cache.hits == 3)
        #expect(cache.misses == 3)
    }

    @Test func anUnknownNameIsRememberedForTheNegativeTTLAndNeverServedStale() {
        var cache = AuthCache(capacity: 10, ttl: 3600, negativeTTL: 600)
        let nobody = UserName("nobody@example.org")
        cache.store(nobody, entry: nil, now: 50)
        #expect(cache.lookup(nobody, now: 50) == .unknown)
        #expect(cache.lookup(nobody, now: 649) == .unknown)
        #expect(cache.lookup(nobody, now: 650) == .miss, "negative answers expire after negativeTTL, not ttl")
        #expect(cache.stale(nobody) == nil, "an unknown name is not served stale")
        // A user deleted from the database: the unknown answer replaces the found one, so
        // an outage no longer serves the deleted user's old secret.
        let bob = UserName("bob@example.org")
        cache.store(bob, entry: Self.entry("bob@example.org"), now: 50)
        cache.store(bob, entry: nil, now: 60)
        #expect(cache.lookup(bob, now: 61) == .unknown)
        #expect(cache.stale(bob) == nil)
    }

    @Test func aNegativeTTLOfZeroNeverAnswersUnknown() {
        var cache = AuthCache(capacity: 10, ttl: 3600, negativeTTL: 0)
        let nobody = UserName("nobody")
        cache.store(nobody, entry: nil, now: 10)
        #expect(cache.lookup(nobody, now: 10) == .miss)
    }

    @Test func aClockBehindTheFetchTimeIsAMiss() {
        var cache = AuthCache(capacity: 10, ttl: 3600, negativeTTL: 600)
        let alice = UserName("alice")
        cache.store(alice, entry: Self.entry("alice"), now: 1000)
        #expect(cache.lookup(alice, now: 999) == .miss)
        #expect(cache.stale(alice) == Self.entry("alice"))
    }

    @Test func namesAreComparedAsOctets() {
        var cache = AuthCache(capacity: 10, ttl: 3600, negativeTTL: 600)
        // "K" and KELVIN SIGN are one String but two user names.
        cache.store(UserName("Kim"), entry: Self.entry("Kim"), now: 0)
        #expect(cache.lookup(UserName("\u{212A}im"), now: 1) == .miss)
        #expect(cache.lookup(UserName("kim"), now: 1) == .miss)
        #expect(cache.lookup(UserName("Kim"), now: 1) == .found(Self.entry("Kim")))
    }

    @Test func atCapacityTheLeastRecentlyUsedUserIsForgotten() {
        var cache = AuthCache(capacity: 3, ttl: 3600, negativeTTL: 600)
        for name in ["a", "b", "c"] { cache.store(UserName(name), entry: Self.entry(name), now: 0) }
        // A lookup marks "a" used; stale() does not mark "b".
        #expect(cache.lookup(UserName("a"), now: 1) == .found(Self.entry("a")))
        #expect(cache.stale(UserName("b")) == Self.entry("b"))
        cache.store(UserName("d"), entry: Self.entry("d"), now: 2)
        #expect(cache.count == 3)
        #expect(cache.stale(UserName("b")) == nil, "b was the least recently used")
        #expect(cache.lookup(UserName("b"), now: 3) == .miss)
        for name in ["a", "c", "d"] {
            #expect(cache.lookup(UserName(name), now: 3) == .found(Self.entry(name)))
        }
        // Negative entries take places too.
        cache.store(UserName("x"), entry: nil, now: 4)
        #expect(cache.count == 3)
        #expect(cache.stale(UserName("a")) == nil, "a was then the least recently used")
    }

    @Test func removeForgetsOneUserAndRemoveAllEveryoneButTheCacheStaysOn() {
        var cache = AuthCache(capacity: 100, ttl: 3600, negativeTTL: 600)
        for i in 0..<50 { cache.store(UserName("u\(i)"), entry: Self.entry("u\(i)"), now: 0) }
        cache.store(UserName("ghost"), entry: nil, now: 0)
        cache.remove(UserName("u7"))
        #expect(cache.lookup(UserName("u7"), now: 1) == .miss)
        #expect(cache.stale(UserName("u7")) == nil)
        #expect(cache.count == 50)
        cache.removeAll()
        #expect(cache.count == 0)
        #expect(cache.isEnabled)
        #expect(cache.lookup(UserName("u1"), now: 1) == .miss)
        #expect(cache.lookup(UserName("ghost"), now: 1) == .miss)
        #expect(cache.stale(UserName("u1")) == nil, "SIGHUP leaves nothing to serve stale")
        // Still works, with its capacity.
        cache.store(UserName("u1"), entry: Self.entry("u1"), now: 2)
        #expect(cache.lookup(UserName("u1"), now: 3) == .found(Self.entry("u1")))
        #expect(cache.capacity == 100)
    }

    @Test(arguments: [0, -5])
    func aCapacityOfZeroTurnsTheCacheOff(capacity: Int) {
        var cache = AuthCache(capacity: capacity, ttl: 3600, negativeTTL: 600)
        #expect(!cache.isEnabled)
        #expect(cache.capacity == 0)
        cache.store(UserName("alice"), entry: Self.entry("alice"), now: 0)
        cache.store(UserName("nobody"), entry: nil, now: 0)
        #expect(cache.count == 0)
        #expect(cache.lookup(UserName("alice"), now: 0) == .miss)
        #expect(cache.lookup(UserName("nobody"), now: 0) == .miss)
        #expect(cache.stale(UserName("alice")) == nil)
        cache.removeAll()
        #expect(!cache.isEnabled)
    }
}
