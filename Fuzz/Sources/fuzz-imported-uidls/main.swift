import FuzzSupport
import Glibc
@testable import Maildrop

// `pop3d.uidls`, pop3d's own imported UIDLs (`ImportedUIDLs.parse`): whole or nothing.
// Invariants: every UIDL is RFC 1939 §7's (1-70 octets in 0x21-0x7E) and given once; every
// name is non-empty UTF-8 without LF or NUL (`storable`); parse(serialize(x)) == x and
// serialize is a fixed point (the file is rewritten by imports and prunes).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImportedUIDLs(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    guard case .success(let imported) = ImportedUIDLs.parse(bytes) else { return 0 }
    var seen = Set<String>()
    for (name, uidl) in imported.uidls {
        check(UIDLRules.isValid(uidl.utf8), "UIDL \(uidl.debugDescription)")
        check(seen.insert(uidl).inserted, "UIDL \(uidl) twice")
        check(ImportedUIDLs.storable(name: name, uidl: uidl), "entry \(name.debugDescription) \(uidl) not storable")
    }
    let written = imported.serialize()
    guard case .success(let again) = ImportedUIDLs.parse(written) else { fail("serialized file does not parse: \(show(written))") }
    check(again == imported, "round trip changes \(show(bytes))")
    check(again.serialize() == written, "serialize is not a fixed point")
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzImportedUIDLs))
