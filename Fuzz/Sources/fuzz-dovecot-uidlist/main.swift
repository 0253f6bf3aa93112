import FuzzSupport
import Glibc
@testable import Maildrop

// Dovecot's `dovecot-uidlist` (`DovecotUIDList.parse`), read with `uidl_format: dovecot`
// and rewritten by pop3d when it gives new messages their UIDs, beside a running Dovecot
// IMAP. Whole or nothing. Invariants:
// - UIDs strictly increase, below 2^32 - 1, and the next UID is above the last;
// - every record has a non-empty base name without `/`, and `byName` maps each name to its
//   last record (Dovecot's rule for a name listed twice);
// - what pop3d writes back (`serialize`, after adding the GUID Dovecot would add) parses to
//   the same list: every record keeps its UID, name, POP3 UIDL and order;
// - `append` gives new names UIDs from the next UID on, increasing.

func summary(_ list: DovecotUIDList) -> [String] {
    list.records.map { r in
        "\(r.uid) \(String(decoding: r.name, as: UTF8.self)) \(r.pop3UIDL ?? "-") \(r.pop3Order.map(String.init) ?? "-")"
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDovecotUIDList(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    guard case .success(var list) = DovecotUIDList.parse(bytes) else { return 0 }
    var previous: UInt32 = 0
    for (i, r) in list.records.enumerated() {
        check(r.uid > previous && r.uid < UInt32.max, "UID \(r.uid) after \(previous)")
        previous = r.uid
        check(!r.name.isEmpty && !r.name.contains(UInt8(ascii: "/")), "name \(show(r.name))")
        guard let last = list.byName[DovecotUIDList.NameKey(r.name)] else { fail("\(show(r.name)) not in byName") }
        check(last >= i && list.records[last].name.elementsEqual(r.name), "byName of \(show(r.name))")
    }
    check(list.nextUID > previous, "next UID \(list.nextUID) not above \(previous)")
    check(list.version == 1 || list.version == 3, "version \(list.version)")
    if list.guid == nil { list.guid = "0123456789abcdef0123456789abcdef" }
    let written = list.serialize()
    guard case .success(let again) = DovecotUIDList.parse(written) else { fail("written list does not parse: \(show(written))") }
    check(again.uidValidity == list.uidValidity && again.nextUID == list.nextUID && again.guid == list.guid,
          "header changes: \(show(written))")
    check(summary(again) == summary(list), "records change: \(show(bytes)) -> \(show(written))")
    check(again.serialize() == written, "serialize is not a fixed point")
    // New names get UIDs from the next UID on.
    let before = list.nextUID
    let names: [ArraySlice<UInt8>] = [Array("1700000000.M1P1.fuzz".utf8)[...], Array("1700000001.M2P1.fuzz".utf8)[...]]
    let fresh = names.filter { list.byName[DovecotUIDList.NameKey($0)] == nil }
    let added = list.append(names: names)
    check(added <= fresh.count, "append added \(added) of \(fresh.count)")
    if before <= UInt32.max - 2 { check(added == fresh.count && list.nextUID == before + UInt32(added), "append") }
    var last: UInt32 = 0
    for r in list.records {
        check(r.uid > last, "UIDs not increasing after append")
        last = r.uid
    }
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzDovecotUIDList))
