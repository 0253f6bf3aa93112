/// Counts the work each client address has outstanding (hashes queued or running on the
/// `WorkerPool`) and refuses more than `limit` per address, so one address cannot fill the
/// shared hashing queue and make every other client's login wait behind its hashes
/// (`auth_max_queued_per_ip`).
///
/// IPv6 clients are counted per /64, as `FailurePenalty` counts them: one host usually owns a
/// whole /64 and could otherwise rotate addresses. Trusted networks are not limited (a
/// webmail or a proxy in front of many users is one address). Loop-thread only.
public final class AddressQuota {
    /// Units one address may hold at once (at least 1; `auth_max_queued_per_ip`).
    public private(set) var limit: Int
    /// Networks exempt from the limit (`--trusted-network`).
    public private(set) var trusted: CIDRTable
    private var counts: [IPAddress: Int] = [:]

    /// `limit` jobs at most per address (at least 1).
    public init(limit: Int, trusted: CIDRTable = CIDRTable([])) {
        self.limit = max(1, limit)
        self.trusted = trusted
    }

    /// A reloaded configuration: the new limit (at least 1) applies to the next `take`; units
    /// already taken stay counted.
    public func update(limit: Int, trusted: CIDRTable) {
        self.limit = max(1, limit)
        self.trusted = trusted
    }

    /// Takes one unit for `address`; false (nothing taken) when it already has `limit`.
    /// Trusted addresses always get one. Each true answer needs exactly one `release`.
    public func acquire(_ address: IPAddress) -> Bool {
        let key = FailurePenalty.key(address)
        let n = counts[key, default: 0]
        guard n < limit || trusted.contains(address) else { return false }
        counts[key] = n + 1
        return true
    }

    /// Gives back a unit taken by `acquire`.
    public func release(_ address: IPAddress) {
        let key = FailurePenalty.key(address)
        guard let n = counts[key] else { return }
        if n <= 1 { counts.removeValue(forKey: key) } else { counts[key] = n - 1 }
    }

    /// Units held by `address`'s group (its /64 for IPv6).
    public func outstanding(_ address: IPAddress) -> Int { counts[FailurePenalty.key(address), default: 0] }

    /// Addresses holding at least one unit: the table never outgrows the outstanding jobs.
    public var trackedAddresses: Int { counts.count }
}
