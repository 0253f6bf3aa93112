import Glibc

/// Delays before `-ERR [AUTH]` that grow with consecutive failed logins from
/// one client address: 0 s for the first, then 2, 4, 8, capped at 15 s.
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
    /// Addresses tracked at most; the least recently failed one is evicted, so
    /// an attacker spraying addresses cannot grow memory.
    public static let defaultCapacity = 65_536

    struct Record {
        var failures: Int
        var lastFailure: Duration
    }

    public let trusted: CIDRTable
    public let capacity: Int
    private let clock: () -> Duration
    private var records: [IPAddress: Record] = [:]

    /// `clock` returns monotonic time since any fixed origin (tests pass a fake).
    public init(trusted: CIDRTable = CIDRTable([]), capacity: Int = FailurePenalty.defaultCapacity,
                clock: @escaping () -> Duration = FailurePenalty.monotonicNow) {
        self.trusted = trusted
        self.capacity = max(1, capacity)
        self.clock = clock
    }

    public func isTrusted(_ address: IPAddress) -> Bool { trusted.contains(address) }

    /// Records a failed login and returns how long to wait before replying.
    /// Trusted addresses are not recorded and wait zero.
    public func recordFailure(from address: IPAddress) -> Duration {
        guard !isTrusted(address) else { return .zero }
        let key = Self.key(address)
        let now = clock()
        var record = records[key] ?? Record(failures: 0, lastFailure: now)
        if now - record.lastFailure > Self.forgetAfter { record.failures = 0 }
        record.failures += 1
        record.lastFailure = now
        if records[key] == nil && records.count >= capacity { evict(now: now) }
        records[key] = record
        return Self.delay(afterFailures: record.failures)
    }

    /// A successful login clears the address's record.
    public func recordSuccess(from address: IPAddress) {
        records.removeValue(forKey: Self.key(address))
    }

    /// Consecutive failures currently counted for `address`.
    public func failures(for address: IPAddress) -> Int {
        guard let r = records[Self.key(address)], clock() - r.lastFailure <= Self.forgetAfter else { return 0 }
        return r.failures
    }

    public var trackedAddresses: Int { records.count }

    /// 0 for the first failure, then baseDelay * 2^(n-2), at most maxDelay.
    public static func delay(afterFailures n: Int) -> Duration {
        guard n > 1 else { return firstDelay }
        let doublings = min(n - 2, 8)
        return min(baseDelay * (1 << doublings), maxDelay)
    }

    /// Drops expired records; if none expired, the least recently failed one.
    /// O(n), but only when the table is full.
    private func evict(now: Duration) {
        let before = records.count
        records = records.filter { now - $0.value.lastFailure <= Self.forgetAfter }
        if records.count < before { return }
        if let oldest = records.min(by: { $0.value.lastFailure < $1.value.lastFailure })?.key {
            records.removeValue(forKey: oldest)
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
