import FuzzSupport
import Glibc
@testable import Maildrop

// Maildir file names as a listing reads them from new/ and cur/ (`MaildirName`): valid
// UTF-8 (others are skipped by the listing), no `/`, no NUL, not a dot-file. Invariants:
// - the UIDL is always RFC 1939 §7's: 1-70 octets in 0x21-0x7E (the unique name, or its hash);
// - the unique name survives what other agents do to a name: a `:2,<flags>` info part, and
//   `,S=`/`,W=` fields added before it; it has no `:`;
// - Courier's reader computes the same unique name without the rest of the parse
//   (`CourierSizeList.uniqueName`), and Dovecot's base name is the name up to `:`;
// - sizes from `S=`/`W=` are never negative; the leading seconds are the leading digits.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMaildirName(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    guard !bytes.isEmpty, bytes[0] != UInt8(ascii: "."), !bytes.contains(0), !bytes.contains(UInt8(ascii: "/")),
          let fileName = String(validating: bytes, as: UTF8.self) else { return 0 }
    let name = MaildirName(fileName)
    let uid = Array(name.uid.utf8)
    check(!uid.isEmpty && uid.count <= 70 && uid.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }, "UIDL \(show(uid)) of \(show(bytes))")
    let unique = Array(name.uniqueName.utf8)
    check(!unique.contains(UInt8(ascii: ":")), "unique name \(show(unique)) has a colon")
    let base = Array(bytes.prefix { $0 != UInt8(ascii: ":") })
    check(unique.count <= base.count, "unique name longer than the base")
    check(Array(DovecotUIDList.baseName(fileName)) == base, "Dovecot base name of \(show(bytes))")
    check(CourierSizeList.uniqueName(bytes[...]) == name.uniqueName,
          "Courier's unique name \(CourierSizeList.uniqueName(bytes[...]).debugDescription) vs \(name.uniqueName.debugDescription)")
    if let s = name.sField { check(s >= 0, "S=\(s)") }
    if let w = name.wField { check(w >= 0, "W=\(w)") }
    if let seconds = name.seconds {
        let digits = unique.prefix { $0 >= 0x30 && $0 <= 0x39 }
        check(!digits.isEmpty && UInt64(String(decoding: digits, as: UTF8.self)) == seconds, "seconds \(seconds) of \(show(bytes))")
    }
    // What other agents do to a name keeps its unique name (and so its UIDL).
    if !bytes.contains(UInt8(ascii: ":")) {
        let flagged = MaildirName(fileName + ":2,FRS")
        check(flagged.uniqueName == name.uniqueName && flagged.uid == name.uid, "flags change the unique name of \(show(bytes))")
        let sized = MaildirName(fileName + ",S=12,W=13:2,")
        if !unique.isEmpty {
            check(sized.uniqueName == name.uniqueName, "S=/W= fields change the unique name of \(show(bytes))")
            check(sized.sField == 12 && sized.wField == 13, "S=/W= not read from \(show(bytes)),S=12,W=13")
        }
    }
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzMaildirName))
