import FuzzSupport
import Glibc
@testable import Maildrop

// Courier's `courierpop3dsizelist` (`CourierSizeList.parse`), read when a host leaves
// Courier (`uidl_format: courier`, `pop3d uidl import`): whole or nothing. Invariants:
// - the header's version is one Courier writes (2 or 3);
// - every record's key is the unique name Maildrop gives the file (`MaildirName`), and no
//   two records share a UIDL (RFC 1939 §7: a UIDL is never reused);
// - every UIDL is Courier's own form: `UID<n>-<v>`, `UID<n>`, or the escaped name, which
//   holds only 0x21-0x7E (the RFC 1939 §7 rules then repair length, `UIDLRules`);
// - a file with one more garbage line, or cut before its last LF, is refused.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCourierSizeList(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    guard case .success(let list) = CourierSizeList.parse(bytes) else { return 0 }
    check(CourierSizeList.versions.contains(list.version), "version \(list.version)")
    check(Set(list.uidls.values).count == list.uidls.count, "a UIDL given twice")
    // Each record line, again, by the file's own split.
    let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).dropFirst().dropLast()
    check(lines.count == list.uidls.count, "\(lines.count) records, \(list.uidls.count) UIDLs")
    for line in lines {
        guard let space2 = line.lastIndex(of: 0x20), let space1 = line[..<space2].lastIndex(of: 0x20) else {
            fail("accepted record \(show(line))")
        }
        let fileName = line[line.startIndex..<space1]
        guard let text = String(validating: fileName, as: UTF8.self) else { fail("name \(show(fileName))") }
        let unique = MaildirName(text).uniqueName
        guard let uidl = list.uidls[unique] else { fail("no UIDL under \(unique.debugDescription) for \(show(line))") }
        check(uidl.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }, "UIDL \(uidl.debugDescription) outside 0x21-0x7E")
        let ids = line[(space2 + 1)...].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        if ids[0].elementsEqual("0".utf8) || ids[0].allSatisfy({ $0 == 0x30 }) {
            check(!uidl.hasPrefix("UID") || fileName.starts(with: "UID".utf8), "UID 0 gives \(uidl)")
        } else {
            check(uidl.hasPrefix("UID"), "UIDL \(uidl) of \(show(line))")
        }
    }
    check(CourierSizeList.parse(bytes + Array("garbage\n".utf8)).isFailure, "a garbage record accepted")
    check(CourierSizeList.parse(Array(bytes.dropLast())).isFailure, "a file without its last LF accepted")
    return 0
}

extension Result {
    var isFailure: Bool { if case .failure = self { true } else { false } }
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzCourierSizeList))
