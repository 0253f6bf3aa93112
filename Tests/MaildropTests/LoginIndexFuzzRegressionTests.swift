import Testing
@testable import Maildrop

/// Inputs the fuzz targets (`Fuzz/`, `make fuzz`) found, kept as unit tests named after the
/// bug; each input is also in `Fuzz/Corpus/<target>/regression-*`.
@Suite struct LoginIndexFuzzRegressionTests {
    static let folder = LoginIndex.FolderState(dev: 1, ino: 2, mtime: .init(sec: 3, nsec: 0), ctime: .init(sec: 3, nsec: 0))

    /// The index's bytes with the checksum recomputed, as whoever can write the Maildir can.
    static func resealed(_ bytes: [UInt8]) -> [UInt8] {
        var out = bytes
        let sum = out.withUnsafeBytes { LoginIndex.checksum(UnsafeRawBufferPointer(rebasing: $0[24...])) }
        withUnsafeBytes(of: sum.littleEndian) { out.replaceSubrange(16..<24, with: $0) }
        return out
    }

    /// fuzz-login-index, `Fuzz/Corpus/fuzz-login-index/regression-empty-uidl`: an entry whose
    /// UIDL is its unique name (flag 2) and whose unique name is a prefix of the file name
    /// (flag 1) of length 0 gave the empty UIDL, which RFC 1939 §7 forbids (1 to 70 octets) and
    /// which the format says discards the whole index.
    @Test func emptyUniqueNamePrefixGivesNoEmptyUIDL() {
        let info = MessageInfo(folder: .cur, fileName: "1700000000.M2P1.host:2,S", uniqueName: "1700000000.M2P1.host",
                               uid: "1700000000.M2P1.host", size: 12, fileSize: 10)
        let index = LoginIndex(rootDev: 1, rootIno: 2, clock: .init(sec: 10, nsec: 0), new: Self.folder, cur: Self.folder,
                               entries: [LoginIndex.Entry(info: info, mtimeSec: 5, mtimeNsec: 0, seconds: 1_700_000_000, microseconds: 0)])
        guard var bytes = index.serialize() else {
            Issue.record("the index cannot be written")
            return
        }
        let entry = LoginIndex.headerBytes
        #expect(bytes[entry + 29] == 3, "flags: the unique name is a prefix and is the UIDL")
        guard case .success = LoginIndex.parse(bytes) else {
            Issue.record("the unchanged index does not parse")
            return
        }
        bytes[entry + 32] = 0  // unique name length 0: nothing else moves (it was not stored)
        bytes[entry + 33] = 0
        switch LoginIndex.parse(Self.resealed(bytes)) {
        case .success(let forged):
            Issue.record("accepted, UIDL \(forged.entries.map(\.info.uid))")
        case .failure(let why):
            #expect(why.text.contains("UIDL"), "\(why.text)")
        }
    }
}
