/// The unique names a listing has seen, compared as octets (`ByteName`'s rule: two names that
/// differ only in Unicode normalization are two messages), for `Maildrop.list`'s "first
/// sighting wins" when a move new/ → cur/ between the two readdirs shows a message twice.
///
/// Up to `linearLimit` names they are kept in an array, each with a 64-bit hash of its
/// octets (`quickHash`, eight octets per step), and a name is looked for by comparing those
/// hashes, then the octets of a name whose hash is equal: for the ten or so messages of a
/// typical maildrop that is a fraction of a `Set<ByteName>`, which runs SipHash over every
/// name and rehashes them all as it grows (issue 17: about 550 instructions per name). A
/// listing that grows past the limit moves to a `Set<ByteName>`, so a large maildrop does not
/// pay a quadratic search. The names come from the Maildir's own directory listing, not from a
/// client.
struct SeenNames {
    /// Names kept in the array before the set takes over: 32 names cost at most 496 hash
    /// comparisons in all, less than two `Set` insertions.
    static let linearLimit = 32

    /// The names of the linear stage, each with its `quickHash` (one array: one allocation).
    private var names: [(hash: UInt64, name: String)] = []
    private var table: Set<ByteName>? = nil

    init() {}

    /// Names seen so far.
    var count: Int { table?.count ?? names.count }

    /// Room for `n` names in all; beyond `linearLimit` the set takes over at once.
    mutating func reserveCapacity(_ n: Int) {
        if table == nil && n > Self.linearLimit { moveToSet(capacity: n) }
        if table != nil {
            table?.reserveCapacity(n)  // in place
        } else {
            names.reserveCapacity(n)
        }
    }

    /// Adds `name`; false when it was seen already (compared as octets).
    mutating func insert(_ name: String) -> Bool {
        if table != nil { return insertIntoSet(name) }
        let h = Self.quickHash(name)
        for i in names.indices where names[i].hash == h && ByteName(names[i].name) == ByteName(name) { return false }
        if names.count == Self.linearLimit {
            moveToSet(capacity: 2 * Self.linearLimit)
            return insertIntoSet(name)
        }
        names.append((h, name))
        return true
    }

    private mutating func insertIntoSet(_ name: String) -> Bool {
        table?.insert(ByteName(name)).inserted ?? false  // in place
    }

    private mutating func moveToSet(capacity: Int) {
        var s = Set<ByteName>(minimumCapacity: Swift.max(capacity, names.count))
        for n in names { s.insert(ByteName(n.name)) }
        table = s
        names = []
    }

    /// A 64-bit hash of the octets of `name`, eight at a time (a multiply and a shift per
    /// word): a filter before the octets are compared, not a hash-table key, so equal names
    /// must hash alike (they do: the same octets) and different ones rarely.
    static func quickHash(_ name: String) -> UInt64 {
        if let h = name.utf8.withContiguousStorageIfAvailable({ quickHash($0) }) { return h }
        return Array(name.utf8).withUnsafeBufferPointer { quickHash($0) }
    }

    static func quickHash(_ b: UnsafeBufferPointer<UInt8>) -> UInt64 {
        let k: UInt64 = 0x9E37_79B9_7F4A_7C15
        var h = UInt64(b.count) &* k
        guard let p = b.baseAddress else { return h }
        var i = 0
        while i + 8 <= b.count {
            h = (h ^ UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)) &* k
            h ^= h >> 29
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < b.count {
            tail |= UInt64(b[i]) << shift
            shift += 8
            i += 1
        }
        h = (h ^ tail) &* k
        return h ^ (h >> 32)
    }
}
