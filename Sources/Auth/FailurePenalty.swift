import Glibc
import SystemCalls

/// Delays that grow with consecutive failed logins from one client address: 0 s after the
/// first, then 2, 4, 8, capped at 15 s.
///
/// The delay is served BEFORE the next attempt is verified (`delayBeforeAttempt`), as
/// Dovecot's auth penalty does, not after the hash: an address that keeps failing waits
/// without holding a hashing worker, so it cannot starve the pool for everyone else. The
/// time already passed since the last failure counts towards the wait, so a person who
/// retypes a password a few seconds later waits nothing.
/// Pure bookkeeping with an injected clock: the glue schedules a reactor timer
/// for the returned delay, nothing here sleeps. Loop-thread only.
///
/// IPv6 clients are counted per /64: one host usually owns a whole /64, so
/// counting per address would let it rotate addresses and never be slowed.
public final class FailurePenalty {
    /// Delay after the first failure (a typo should not be punished).
    public static let firstDelay: Duration = .zero
    /// Delay after the second failure; doubles with each further one.
    public static let baseDelay: Duration = .seconds(2)
    /// Ceiling of the delay.
    public static let maxDelay: Duration = .seconds(15)
    /// A record with no failure for this long is forgotten (a fresh start).
    public static let forgetAfter: Duration = .seconds(15 * 60)
    /// Addresses tracked at most; the least recently failed one is evicted (O(1), `LRUTable`),
    /// so an attacker spraying addresses cannot grow memory.
    public static let defaultCapacity = 65_536

    struct Record {
        var failures: Int
        var lastFailure: Duration
    }

    /// Exempt networks; replaced when the configuration is reloaded (records stay).
    public var trusted: CIDRTable
    /// Addresses (IPv6: /64 networks) tracked at most (at least 1).
    public let capacity: Int
    private let clock: () -> Duration
    /// Least recently failed first: expired records are always at that end.
    private var records: LRUTable<IPAddress, Record>

    /// `clock` returns monotonic time since any fixed origin (tests pass a fake).
    public init(trusted: CIDRTable = CIDRTable([]), capacity: Int = FailurePenalty.defaultCapacity,
                clock: @escaping () -> Duration = FailurePenalty.monotonicNow) {
        self.trusted = trusted
        self.capacity = max(1, capacity)
        self.clock = clock
        self.records = LRUTable(capacity: self.capacity)
    }

    /// True when `address` lies in a `trusted` network: never delayed nor recorded.
    public func isTrusted(_ address: IPAddress) -> Bool { trusted.contains(address) }

    /// Records a failed login and returns how long to wait before replying.
    /// Trusted addresses are not recorded and wait zero.
    public func recordFailure(from address: IPAddress) -> Duration {
        guard !isTrusted(address) else { return .zero }
        let key = Self.key(address)
        let now = clock()
        var record = records.peek(key) ?? Record(failures: 0, lastFailure: now)
        if now - record.lastFailure > Self.forgetAfter { record.failures = 0 }
        record.failures = record.failures < Int.max ? record.failures + 1 : record.failures
        record.lastFailure = now
        dropExpired(now: now)
        // A full table forgets its least recently failed address (O(1)).
        records.updateValue(record, forKey: key)
        return Self.delay(afterFailures: record.failures)
    }

    /// How long the next login attempt from `address` waits before its credentials are
    /// verified (before a hash is queued): the delay the next failure would earn, less the
    /// time since the last failure. Zero for an address with no recent failure and for
    /// trusted networks; after one failure (a typo) the next attempt waits what is left of
    /// `delay(afterFailures: 2)`, which a person retyping a password has usually used up.
    public func delayBeforeAttempt(from address: IPAddress) -> Duration {
        guard !isTrusted(address), let r = records.peek(Self.key(address)) else { return .zero }
        let now = clock()
        let since = now - r.lastFailure
        guard since <= Self.forgetAfter, r.failures >= 1 else { return .zero }
        let wait = Self.delay(afterFailures: r.failures < Int.max ? r.failures + 1 : r.failures) - since
        return wait > .zero ? wait : .zero
    }

    /// A successful login clears the address's record.
    public func recordSuccess(from address: IPAddress) {
        records.removeValue(forKey: Self.key(address))
    }

    /// Consecutive failures currently counted for `address`.
    public func failures(for address: IPAddress) -> Int {
        guard let r = records.peek(Self.key(address)), clock() - r.lastFailure <= Self.forgetAfter else { return 0 }
        return r.failures
    }

    /// Addresses (IPv6: /64 networks) with a failure record now, expired ones included until pruned.
    public var trackedAddresses: Int { records.count }

    /// 0 for the first failure, then baseDelay * 2^(n-2), at most maxDelay.
    public static func delay(afterFailures n: Int) -> Duration {
        guard n > 1 else { return firstDelay }
        let doublings = min(n - 2, 8)
        return min(baseDelay * (1 << doublings), maxDelay)
    }

    /// Drops expired records from the least recently failed end. Each record is dropped at
    /// most once, so this is O(1) amortised per failure; the check stops at the first record
    /// still alive.
    private func dropExpired(now: Duration) {
        while let (_, oldest) = records.leastRecent, now - oldest.lastFailure > Self.forgetAfter {
            records.removeLeastRecent()
        }
    }

    static func key(_ address: IPAddress) -> IPAddress {
        if case .v6(let high, _) = address { return .v6(high: high, low: 0) }
        return address
    }

    /// CLOCK_MONOTONIC: immune to wall-clock steps.
    public static func monotonicNow() -> Duration {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
    }
}
