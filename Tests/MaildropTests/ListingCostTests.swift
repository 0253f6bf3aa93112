import Glibc
import Testing
@testable import Maildrop
import TestSupport

/// Issue 17's login listing: names parsed in one pass (checked against the parse it replaced),
/// names compared as octets, the size cache read only when a name lacks a usable `W=`, and a
/// name whose `S=`/`W=` disagree with its file still caught the first time it is seen, on
/// every path (small maildrop, quick open, size cache, login index).
@Suite struct ListingCostTests {
    static let body = Array("Subject: s\n\nline one\nline two\n".utf8)  // 30 octets, 34 with CRLF
    static let wire = 34

    // MARK: one-pass parse, the same fields as before

    /// `MaildirName` as it was before issue 17 (split into arrays), the reference.
    struct SplitName {
        let uniqueName: String
        let seconds: UInt64?
        let microseconds: UInt64
        let sField: Int?
        let wField: Int?

        init(_ fileName: String) {
            let bytes = Array(fileName.utf8)
            let baseEnd = bytes.firstIndex(of: UInt8(ascii: ":")) ?? bytes.count
            let base = bytes[0..<baseEnd]
            var unique: [UInt8] = []
            var s: Int? = nil
            var w: Int? = nil
            var first = true
            for piece in base.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
                if !first, piece.count >= 2, piece[piece.startIndex + 1] == UInt8(ascii: "=") {
                    let key = piece[piece.startIndex]
                    let value = MaildirName.parseDecimal(piece.dropFirst(2))
                    if key == UInt8(ascii: "S") { s = value; continue }
                    if key == UInt8(ascii: "W") { w = value; continue }
                }
                if !first { unique.append(UInt8(ascii: ",")) }
                unique.append(contentsOf: piece)
                first = false
            }
            uniqueName = String(decoding: unique, as: UTF8.self)
            sField = s
            wField = w
            let dot1 = unique.firstIndex(of: UInt8(ascii: ".")) ?? unique.count
            seconds = MaildirName.parseDecimal(unique[0..<dot1]).map { UInt64($0) }
            var usec: UInt64 = 0
            if dot1 < unique.count {
                let rest = unique[(dot1 + 1)...]
                let dot2 = rest.firstIndex(of: UInt8(ascii: ".")) ?? rest.endIndex
                let middle = rest[rest.startIndex..<dot2]
                if let m = middle.firstIndex(of: UInt8(ascii: "M")) {
                    var end = m + 1
                    while end < middle.endIndex, middle[end] >= 0x30, middle[end] <= 0x39 { end += 1 }
                    if let v = MaildirName.parseDecimal(middle[(m + 1)..<end]) { usec = UInt64(v) }
                }
            }
            microseconds = usec
        }
    }

    static func expectSame(_ name: String) {
        let new = MaildirName(name), old = SplitName(name)
        #expect(Array(new.uniqueName.utf8) == Array(old.uniqueName.utf8), "unique name of \(name.debugDescription)")
        #expect(new.seconds == old.seconds, "seconds of \(name.debugDescription)")
        #expect(new.microseconds == old.microseconds, "microseconds of \(name.debugDescription)")
        #expect(new.sField == old.sField, "S= of \(name.debugDescription)")
        #expect(new.wField == old.wField, "W= of \(name.debugDescription)")
    }

    @Test func onePassParseGivesTheFieldsOfTheSplitParse() {
        for name in ["", ":", ",", ",,", ":2,S", ",S=5", ",S=5:2,", "S=5,W=6", "1.M2.h,S=,W=", "1.M2.h,S=x,W=7",
                     "1700000000.M123456P789.host,S=1234,W=1260:2,S", "1.M1.h,Z=9,W=5:2,", "1.M1.h,W=5,Z=9,S=3",
                     "1.M1.h,,S=1,,W=2,", "1.M1.h,S=1234567890123456789", "1.M1234567890123456789.h",
                     "1700000001.V801I2c3M000042.mx.example.org", "nodigits.host:2,RS", "1..M5", "1.M.h", "12:34,S=5",
                     "1700000000.Mü.host,W=3", "é.M1.h,S=2:2,,W=9", "1.XM9M8.h", "1,S=5.M6.h"] {
            Self.expectSame(name)
        }
        // Random names over the octets that matter to the parse.
        var rng = SplitMix64(seed: 17)
        let alphabet: [String] = ["1", "7", "0", ".", ",", ":", "S", "W", "=", "M", "P", "h", "2", "é", "x"]
        for _ in 0..<20_000 {
            let length = Int(rng.next() % 24)
            var name = ""
            for _ in 0..<length { name += alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            Self.expectSame(name)
        }
    }

    @Test func aNameWithoutInfoOrFieldsIsItsOwnUniqueName() {
        let name = "1700000000.M123456P789.a-rather-long-host.example.org"
        let parsed = MaildirName(name)
        #expect(parsed.uniqueName == name)
        #expect(parsed.seconds == 1_700_000_000 && parsed.microseconds == 123_456)
    }

    @Test func aMaildropPathWithNULOrRelativeIsRefused() {
        for path in ["/tmp/mail\u{0}/Maildir", "relative/Maildir", "\u{0}"] {
            #expect(throws: MaildropError.self, "\(path.debugDescription)") {
                try Maildrop.open(path: path, createIfMissing: false)
            }
        }
    }

    // MARK: names as octets

    /// "é" precomposed (U+00E9) and decomposed (e + U+0301): canonically equivalent `String`s,
    /// different file names. Before issue 17 the listing's `Set<String>` made them one message
    /// (the second skipped as a duplicate of a new/ → cur/ move).
    static let composed = "1700000000.M1P1.caf\u{E9}"
    static let decomposed = "1700000000.M1P1.cafe\u{301}"

    @Test func canonicallyEquivalentNamesAreTwoMessages() throws {
        #expect(Self.composed == Self.decomposed)  // as Swift Strings
        let f = try Fixture()
        try f.writer.deliver(Array("one\n".utf8), fileName: Self.composed)
        try f.writer.deliver(Array("second\n".utf8), fileName: Self.decomposed)
        // Not quick first: sizes no cache holds yet are read by a worker's open.
        for quick in [false, true] {
            let md = try Maildrop.open(path: f.root, quick: quick)
            #expect(md.count == 2, "quick \(quick)")
            #expect(Set(md.messages.map(\.size)) == [5, 8], "quick \(quick)")
            #expect(md.statistics.entriesSkipped == 0, "quick \(quick)")
            md.close()
        }
        // Both sizes cached, each under its own name: the next open reads no message.
        let again = try Maildrop.open(path: f.root)
        #expect(again.count == 2)
        #expect(again.statistics.sizesFromCache == 2)
        #expect(again.statistics.messagesRead == 0)
    }

    @Test func sizeCacheKeysAreOctets() {
        let text = SizeCache.header + "\n" + "4 1.0 5 \(Self.composed)\n" + "7 1.0 8 \(Self.decomposed)\n"
        let cache = SizeCache.parse(Array(text.utf8))
        #expect(cache?.entries.count == 2)
        #expect(cache?.entries[ByteName(Self.composed)]?.crlfSize == 5)
        #expect(cache?.entries[ByteName(Self.decomposed)]?.crlfSize == 8)
        if let cache { #expect(SizeCache.parse(cache.serialize())?.entries == cache.entries) }
    }

    @Test func byteNameHashesAndComparesOctets() {
        #expect(ByteName("abc") == ByteName("abc"))
        #expect(ByteName("") == ByteName(""))
        #expect(ByteName("abc") != ByteName("abd"))
        #expect(ByteName(Self.composed) != ByteName(Self.decomposed))
        #expect(ByteName("a") < ByteName("b") && ByteName("a") < ByteName("ab") && !(ByteName("b") < ByteName("a")))
        var h1 = Hasher(), h2 = Hasher()
        ByteName("1700000000.M1P1.host").hash(into: &h1)
        ByteName(String(Substring("x1700000000.M1P1.host".dropFirst()))).hash(into: &h2)
        #expect(h1.finalize() == h2.finalize())
        #expect(Set([ByteName(Self.composed), ByteName(Self.decomposed), ByteName(Self.composed)]).count == 2)
    }

    // MARK: the size cache only when a name lacks a usable W=

    @Test func namesWithUsableWFieldsDoNotReadTheSizeCache() throws {
        let f = try Fixture()
        for i in 0..<3 {
            try f.writer.deliver(Self.body, fileName: "\(1_700_000_000 + i).M\(i)P1.host,S=30,W=\(Self.wire)")
        }
        // A cache with an entry of a gone message: read once, to drop it.
        writeFile(f.root + "/" + SizeCache.fileName, Array((SizeCache.header + "\n4 1.0 6 gone.host\n").utf8))
        let first = try Maildrop.open(path: f.root, quick: true)
        #expect(first.statistics.sizeCacheRead)
        #expect(first.statistics.cacheWritten)
        #expect(first.statistics.sizesFromName == 3)
        first.close()
        // Emptied: from now on never opened while every name carries its size.
        for quick in [true, false] {
            let md = try Maildrop.open(path: f.root, quick: quick)
            #expect(!md.statistics.sizeCacheRead, "quick \(quick)")
            #expect(!md.statistics.cacheWritten, "quick \(quick)")
            #expect(md.messages.map(\.size) == [Self.wire, Self.wire, Self.wire])
            md.close()
        }
        // A message without W=: the cache is read (and its size stored in it).
        try f.writer.deliver(Self.body, fileName: "1700000009.M9P1.host")
        let mixed = try Maildrop.open(path: f.root, quick: false)
        #expect(mixed.statistics.sizeCacheRead)
        #expect(mixed.statistics.messagesRead == 1)
        #expect(mixed.statistics.cacheWritten)
        mixed.close()
        let warm = try Maildrop.open(path: f.root, quick: true)
        #expect(warm.statistics.sizeCacheRead)
        #expect(warm.statistics.sizesFromCache == 1 && warm.statistics.sizesFromName == 3)
    }

    // MARK: S=/W= that disagree with the file, caught the first time

    /// Names whose fields cannot be this file's sizes: S= not its size, W= below it, W= above
    /// twice it plus 2.
    static let lyingNames = ["1700000100.M1P1.host,S=29,W=34", "1700000101.M1P1.host,S=30,W=29",
                             "1700000102.M1P1.host,W=999:2,S"]

    static func expectTrueSizes(_ md: Maildrop, _ names: [String], _ what: String) {
        for name in names {
            guard let m = md.messages.first(where: { $0.fileName == name }) else {
                Issue.record("\(what): \(name) not listed")
                continue
            }
            #expect(m.size == wire, "\(what): \(name) listed with \(m.size) octets")
        }
    }

    @Test func lyingSizeFieldsAreCaughtInASmallMaildrop() throws {
        let f = try Fixture()
        try f.writer.deliver(Self.body, fileName: "1700000000.M0P1.host")  // a size cache is written
        try Maildrop.open(path: f.root).close()
        for name in Self.lyingNames {
            try f.writer.deliver(Self.body, fileName: name, into: name.contains(":") ? .cur : .new)
        }
        let md = try Maildrop.open(path: f.root)
        Self.expectTrueSizes(md, Self.lyingNames, "first sight")
        #expect(md.statistics.sizesFromName == 0)
        md.close()
        let again = try Maildrop.open(path: f.root, quick: true)
        Self.expectTrueSizes(again, Self.lyingNames, "second login")
        #expect(again.statistics.sizesFromName == 0)
    }

    @Test func lyingSizeFieldsAreCaughtInAnIndexedMaildrop() throws {
        let f = try Fixture()
        try LoginIndexTests.fill(f)
        try Maildrop.open(path: f.root).close()
        #expect(access(f.root + "/" + LoginIndex.fileName, F_OK) == 0)
        for name in Self.lyingNames {
            try f.writer.deliver(Self.body, fileName: name, into: name.contains(":") ? .cur : .new)
        }
        LoginIndexTests.waitForFileSystemClock(f.root)
        let md = try Maildrop.open(path: f.root)
        Self.expectTrueSizes(md, Self.lyingNames, "first sight, index")
        #expect(md.statistics.messagesRead == Self.lyingNames.count)
        md.close()
        LoginIndexTests.waitForFileSystemClock(f.root)
        let warm = try Maildrop.open(path: f.root)
        Self.expectTrueSizes(warm, Self.lyingNames, "warm login, index")
        #expect(warm.statistics.foldersListed == 0)
    }
}
