import FuzzSupport
import Glibc
@testable import Maildrop

// `pop3d.sizes`, the per-Maildir size cache (`SizeCache.parse`): whole or nothing. Octet 0
// picks the wire-size rule (bit 0: `oe-ns-eoh`), the rest is the file. Invariants:
// - a cached size is one a CRLF conversion of a file of that size can give (at least the
//   file size, at most 2 × size + 2, plus 2 under `oe-ns-eoh`): it reaches STAT's sums;
// - a file written under one rule is never read under the other;
// - parse(serialize(c)) == c, and serialize is a fixed point from there;
// - the lookup table (`SizeCache.Table`, issue 17): rows strictly ascending by name octets
//   (unique), and every name is found at its own row by the binary search, with its entry.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSizeCache(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var reader = FuzzReader(inputBytes(data, size))
    let rule = WireSizeRule(addsMissingHeaderEnd: reader.byte() & 1 == 1)
    let bytes = reader.rest()
    guard let cache = SizeCache.parse(bytes, rule: rule) else { return 0 }
    check(cache.rule == rule, "rule")
    check(SizeCache.parse(bytes, rule: WireSizeRule(addsMissingHeaderEnd: !rule.addsMissingHeaderEnd)) == nil,
          "a cache read under both rules: \(show(bytes))")
    let extra = rule.addsMissingHeaderEnd ? 2 : 0
    for (name, e) in cache.entries {
        check(!name.string.isEmpty && !name.string.utf8.contains(0x0A), "name \(name.string.debugDescription)")
        check(e.fileSize >= 0 && e.crlfSize >= e.fileSize, "entry \(e)")
        check(Int128(e.crlfSize) <= 2 * Int128(e.fileSize) + 2 + Int128(extra), "size \(e.crlfSize) for a file of \(e.fileSize)")
        check(e.mtimeSec >= 0 && e.mtimeNsec >= 0, "mtime \(e)")
    }
    let table = cache.table
    for row in table.rows.indices {
        if row > 0 {
            check(table.nameOctets(row - 1).lexicographicallyPrecedes(table.nameOctets(row)),
                  "rows not strictly ascending at \(row) in \(show(bytes))")
        }
        let name = table.name(row)
        check(table.find(name) == row, "\(name.debugDescription) not found at its row \(row)")
        check(cache.entries[ByteName(name)] == table.rows[row].entry, "entry of \(name.debugDescription)")
    }
    // A name next to each stored one (one more octet): found exactly when it is stored.
    for row in table.rows.indices.prefix(64) {
        let probe = table.name(row) + "x"
        check((table.find(probe) != nil) == (cache.entries[ByteName(probe)] != nil), "lookup of \(probe.debugDescription)")
    }
    let written = cache.serialize()
    guard let again = SizeCache.parse(written, rule: rule) else { fail("serialized cache does not parse: \(show(written))") }
    check(again.entries == cache.entries, "round trip changes the entries of \(show(bytes))")
    check(again.serialize() == written, "serialize is not a fixed point")
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzSizeCache))
