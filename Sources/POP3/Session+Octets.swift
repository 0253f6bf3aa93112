/// Octet and counter arithmetic of the session. Sizes come from disk (a size cache, a name's
/// `W=` field, a sparse file of many TiB) and counts from the client (280,000 pipelined
/// `RETR`s), so no sum of them may trap (DESIGN "Rules every change keeps"): every sum
/// saturates at `Int.max`.
///
/// Why saturation keeps STAT honest enough and never traps: every term is clamped to be
/// non-negative at login, so a saturating sum is `min(true sum, Int.max)` whatever the order
/// of the additions; the deleted messages are a subset of all of them, hence
/// `deletedOctets <= totalOctets` always and `totalOctets - deletedOctets` cannot overflow.
/// Below `Int.max` (9.2 EB) every figure is exact.
extension Session {
    /// `a + b`, or `Int.max` when that overflows. Both are non-negative here.
    @inline(__always)
    static func saturatingAdd(_ a: Int, _ b: Int) -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : sum
    }

    /// Sizes as the session keeps them: a negative size (a glue bug) counts as 0.
    static func octets(of sizes: [Int]) -> (sizes: [Int], total: Int) {
        var clamped = sizes
        var total = 0
        for index in clamped.indices {
            if clamped[index] < 0 { clamped[index] = 0 }
            total = saturatingAdd(total, clamped[index])
        }
        return (clamped, total)
    }
}
