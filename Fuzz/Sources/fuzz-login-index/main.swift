import FuzzSupport
import Glibc
@testable import Maildrop

// `pop3d.index`, the binary login index (`LoginIndex.parse`): a login that trusts it serves
// its names, sizes and UIDLs without listing the folders, so what it accepts must be what a
// listing could give. Octet 0: bit 0 the wire-size rule (`oe-ns-eoh`); bit 1 writes the
// magic, version and rule words; bit 2 writes the length and the checksum (a fuzzer cannot
// find a 64-bit checksum, and the checksum is no defence: whoever can write the Maildir
// can write a matching index). The rest is the file. Invariants of every accepted entry:
// - a plain file name (1-255 octets, no `/`, no NUL, not a dot-file);
// - a UIDL of RFC 1939 §7: 1-70 octets in 0x21-0x7E;
// - a CRLF size possible for its file size (at least it, at most 2 × it + 2);
// and serialize(parse(x)) parses to the same index.

func le<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
    withUnsafeBytes(of: value.littleEndian) { raw in
        for (i, b) in raw.enumerated() { bytes[offset + i] = b }
    }
}

func same(_ a: LoginIndex, _ b: LoginIndex) -> Bool {
    guard a.rootDev == b.rootDev, a.rootIno == b.rootIno, a.clock == b.clock, a.new == b.new, a.cur == b.cur,
          a.entries.count == b.entries.count else { return false }
    for (x, y) in zip(a.entries, b.entries) {
        guard x.info == y.info, x.mtimeSec == y.mtimeSec, x.mtimeNsec == y.mtimeNsec,
              x.seconds == y.seconds, x.microseconds == y.microseconds else { return false }
    }
    return true
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLoginIndex(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var reader = FuzzReader(inputBytes(data, size))
    let options = reader.byte()
    let rule = WireSizeRule(addsMissingHeaderEnd: options & 1 == 1)
    var bytes = reader.rest()
    if options & 0x06 != 0 && bytes.count < LoginIndex.headerBytes {
        bytes += [UInt8](repeating: 0, count: LoginIndex.headerBytes - bytes.count)
    }
    if options & 0x02 != 0 {
        for (i, b) in LoginIndex.magic.enumerated() { bytes[i] = b }
        le(LoginIndex.formatVersion, into: &bytes, at: 8)
        le(LoginIndex.ruleStamp(rule), into: &bytes, at: 12)
    }
    if options & 0x04 != 0 {
        le(UInt64(bytes.count), into: &bytes, at: 24)
        let sum = bytes.withUnsafeBytes { LoginIndex.checksum(UnsafeRawBufferPointer(rebasing: $0[24...])) }
        le(sum, into: &bytes, at: 16)
    }
    guard case .success(let index) = LoginIndex.parse(bytes, rule: rule) else { return 0 }
    for e in index.entries {
        let name = Array(e.info.fileName.utf8)
        check(!name.isEmpty && name.count <= LoginIndex.maxNameBytes && name[0] != UInt8(ascii: ".")
              && !name.contains(0) && !name.contains(UInt8(ascii: "/")), "file name \(show(name))")
        let uid = Array(e.info.uid.utf8)
        check(!uid.isEmpty && uid.count <= 70 && uid.allSatisfy { $0 >= 0x21 && $0 <= 0x7E },
              "UIDL \(show(uid)) of \(show(name)) accepted from an index")
        check(e.info.fileSize >= 0 && e.info.size >= e.info.fileSize
              && Int128(e.info.size) <= 2 * Int128(e.info.fileSize) + 2, "size \(e.info.size) for a file of \(e.info.fileSize)")
        check(e.fromIndex, "entry not marked as read from the index")
    }
    var copy = index
    copy.rule = rule
    guard let written = copy.serialize() else { fail("an accepted index cannot be written back") }
    guard case .success(let again) = LoginIndex.parse(written, rule: rule) else { fail("a written index does not parse") }
    check(same(index, again), "round trip changes the index")
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzLoginIndex))
