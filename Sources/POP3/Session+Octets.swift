/// Octet and counter arithmetic of the session. Sizes come from disk (a size cache, a name's
/// `W=` field, a sparse file of many TiB) and counts from the client (280,000 pipelined
/// `RETR`s), so no sum of them may trap (ARCHITECTURE.md "Rules every change keeps").
///
/// The maildrop's total and the deleted octets are kept in `Int128`: wide enough by
/// construction (fewer than 2^63 messages of fewer than 2^63 octets each sum below 2^126),
/// so they are exact whatever the sizes and whatever the order of DELE and RSET. A figure is
/// clamped to `Int.max` (2^63 − 1, 9.2 EB) only where it is written into a reply. The
/// per-session octets-retrieved counter saturates at `Int.max`.
extension Session {
    /// `a + b`, or `Int.max` when that overflows. Both are non-negative here.
    @inline(__always)
    static func saturatingAdd(_ a: Int, _ b: Int) -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : sum
    }

    /// Sizes as the session keeps them (a negative size, a glue bug, counts as 0) and their
    /// exact sum.
    static func octets(of sizes: [Int]) -> (sizes: [Int], total: Int128) {
        var clamped = sizes
        var total: Int128 = 0
        for index in clamped.indices {
            if clamped[index] < 0 { clamped[index] = 0 }
            total += Int128(clamped[index])
        }
        return (clamped, total)
    }

    /// Octets of the messages not marked deleted, as written in STAT and LIST: exact below
    /// `Int.max`, `Int.max` above.
    var remainingOctets: Int { Int(clamping: totalOctets - deletedOctets) }

    /// Octets of the whole maildrop, as written at login and in RSET.
    var maildropOctets: Int { Int(clamping: totalOctets) }
}
