import Glibc
import Testing
@testable import Maildrop

@Suite struct SizeTests {
    static let samples: [String] = [
        "", "a", "a\n", "a\r\n", "a\nb\n", "a\r\nb\r\n", "mixed\nline\r\nends\n", "no newline at end",
        "trailing cr\r", "\n\n\n", "\r\n\r\n", ".dot\n..two\n", "lone\rcr\n",
        // Issue 10: a bare CR ends a line (classic Mac files); a final one is not doubled.
        "\r", "Subject: c\r\rbody\r", "\r\r\n", "a\r\r",
    ]

    /// The wire-size rule written the slow obvious way (see `CRLFSizeCounter`):
    /// lines end at CRLF, bare LF or bare CR, each sent with CRLF; a non-empty
    /// unterminated last line gets CRLF too.
    static func wireSize(_ bytes: [UInt8]) -> Int {
        var size = 0
        var lineOpen = false
        var index = 0
        while index < bytes.count {
            switch bytes[index] {
            case 0x0D:
                size += 2
                lineOpen = false
                if index + 1 < bytes.count && bytes[index + 1] == 0x0A { index += 1 }
            case 0x0A:
                size += 2
                lineOpen = false
            default:
                size += 1
                lineOpen = true
            }
            index += 1
        }
        return lineOpen ? size + 2 : size
    }

    @Test func issueCasesHaveTheirWireSize() {
        // The single octet CR is the line "" + CRLF; Subject: c CR CR body CR is three lines.
        #expect(SizeTests.wireSize(Array("\r".utf8)) == 2)
        #expect(SizeTests.wireSize(Array("Subject: c\r\rbody\r".utf8)) == 20)
        for sample in ["\r", "Subject: c\r\rbody\r"] {
            var counter = CRLFSizeCounter()
            Array(sample.utf8).withUnsafeBytes { counter.consume($0) }
            #expect(counter.total == SizeTests.wireSize(Array(sample.utf8)), "\(sample.debugDescription)")
        }
    }

    @Test func counterMatchesReferenceWholeAndByteByByte() {
        for sample in SizeTests.samples {
            let bytes = Array(sample.utf8)
            let expected = SizeTests.wireSize(bytes)
            var whole = CRLFSizeCounter()
            bytes.withUnsafeBytes { whole.consume($0) }
            #expect(whole.total == expected, "whole \(sample.debugDescription)")
            var split = CRLFSizeCounter()
            for b in bytes { [b].withUnsafeBytes { split.consume($0) } }
            #expect(split.total == expected, "byte by byte \(sample.debugDescription)")
        }
    }

    @Test func sizesOfLFCRLFMixedAndUnterminatedFiles() throws {
        let f = try Fixture()
        for (i, sample) in SizeTests.samples.enumerated() {
            try f.writer.deliver(Array(sample.utf8), fileName: "\(1_700_000_000 + i).M0P1.host")
        }
        let md = try Maildrop.open(path: f.root)
        #expect(md.count == SizeTests.samples.count)
        for (i, sample) in SizeTests.samples.enumerated() {
            #expect(md.size(i) == SizeTests.wireSize(Array(sample.utf8)), "\(sample.debugDescription)")
        }
        #expect(md.totalSize == SizeTests.samples.reduce(0) { $0 + SizeTests.wireSize(Array($1.utf8)) })
        #expect(md.statistics.messagesRead == SizeTests.samples.count)
    }

    @Test func wFieldIsUsedOnlyWhenConsistent() throws {
        let f = try Fixture()
        let body = Array("a\nb\n".utf8)  // 4 octets on disk, 6 with CRLF
        // Consistent W= (even if "wrong" within bounds) is trusted without a read.
        try f.writer.deliver(body, fileName: "1700000001.M0P1.host,S=4,W=6:2,S", into: .cur)
        // W= smaller than the file: impossible, so the file is read.
        try f.writer.deliver(body, fileName: "1700000002.M0P1.host,W=3")
        // W= far above twice the file: impossible too.
        try f.writer.deliver(body, fileName: "1700000003.M0P1.host,W=100")
        // S= no longer matches the file (it was edited): W= is stale.
        try f.writer.deliver(body, fileName: "1700000004.M0P1.host,S=3,W=5")
        // No W= at all.
        try f.writer.deliver(body, fileName: "1700000005.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        #expect(md.messages.map(\.size) == [6, 6, 6, 6, 6])
        #expect(md.statistics.sizesFromName == 1)
        #expect(md.statistics.messagesRead == 4)
        #expect(Maildrop.consistent(w: 6, s: nil, fileSize: 4))
        #expect(!Maildrop.consistent(w: 11, s: nil, fileSize: 4))
        #expect(!Maildrop.consistent(w: 6, s: 5, fileSize: 4))
    }

    @Test func secondOpenReadsNoMessage() throws {
        let f = try Fixture()
        for i in 0..<20 { try f.writer.deliver(Array("line \(i)\nend\n".utf8), fileName: "\(1_700_000_000 + i).M0P1.host") }
        let first = try Maildrop.open(path: f.root)
        let firstSizes = first.messages.map(\.size)
        #expect(first.statistics.messagesRead == 20)
        #expect(first.statistics.cacheWritten)
        first.close()
        let second = try Maildrop.open(path: f.root)
        #expect(second.statistics.messagesRead == 0)
        #expect(second.statistics.sizesFromCache == 20)
        #expect(!second.statistics.cacheWritten)
        #expect(second.messages.map(\.size) == firstSizes)
        #expect(exists(f.root + "/" + SizeCache.fileName))
        #expect(!exists(f.root + "/" + SizeCache.tempName))
    }

    @Test func changedFileIsRecomputed() throws {
        let f = try Fixture()
        let name = "1700000000.M0P1.host"
        try f.writer.deliver(Array("a\nb\n".utf8), fileName: name)
        try f.writer.deliver(Array("keep\n".utf8), fileName: "1700000001.M0P1.host")
        try Maildrop.open(path: f.root).close()
        // Same length, different content: only the mtime tells.
        writeFile(f.root + "/new/" + name, Array("a\rb\n".utf8))
        var times = [timespec(tv_sec: 1_000, tv_nsec: 0), timespec(tv_sec: 1_000, tv_nsec: 0)]
        utimensat(AT_FDCWD, f.root + "/new/" + name, &times, 0)
        let md = try Maildrop.open(path: f.root)
        #expect(md.size(0) == 6)  // "a" CR "b" LF: two lines, the bare CR is a line end
        #expect(md.statistics.messagesRead == 1)
        #expect(md.statistics.sizesFromCache == 1)
        md.close()
        // Different length.
        writeFile(f.root + "/new/" + name, Array("longer\nbody\n".utf8))
        let md2 = try Maildrop.open(path: f.root)
        #expect(md2.size(0) == 14)
        #expect(md2.statistics.messagesRead == 1)
    }

    @Test func corruptCacheIsIgnored() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("a\nb\n".utf8), fileName: "1700000000.M0P1.host")
        try Maildrop.open(path: f.root).close()
        let cachePath = f.root + "/" + SizeCache.fileName
        let h = SizeCache.header
        for garbage in ["", "\(h)\n4 1.2 999", "\(h)\nx y z w\n", "other 1\n",
                        "\(h)\n4 1 6 1700000000.M0P1.host\n", "\u{0}\u{1}\u{2}"] {
            writeFile(cachePath, Array(garbage.utf8))
            let md = try Maildrop.open(path: f.root)
            #expect(md.size(0) == 6, "\(garbage.debugDescription)")
            #expect(md.statistics.messagesRead == 1)
            #expect(md.statistics.cacheWritten)
            md.close()
        }
        // A syntactically valid but lying entry is not trusted either: its
        // mtime does not match the file.
        writeFile(cachePath, Array("\(h)\n4 1.0 999 1700000000.M0P1.host\n".utf8))
        let md = try Maildrop.open(path: f.root)
        #expect(md.size(0) == 6)
    }

    @Test func cacheForgetsDeletedMessages() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("a\n".utf8), fileName: "1700000000.M0P1.host")
        try f.writer.deliver(Array("b\n".utf8), fileName: "1700000001.M0P1.host")
        try Maildrop.open(path: f.root).close()
        unlink(f.root + "/new/1700000000.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        #expect(md.statistics.cacheWritten)
        md.close()
        let fd = open(f.root + "/" + SizeCache.fileName, O_RDONLY)
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        close(fd)
        let cache = SizeCache.parse(Array(buf[0..<max(n, 0)]))
        #expect(cache?.entries.keys.sorted() == ["1700000001.M0P1.host"])
    }

    /// Issue 10: sizes cached under the old rule (a final bare CR counted as CR CRLF)
    /// match the file's size and mtime, yet are not what RETR now sends: a cache
    /// written under another rule version is ignored and the file is read again.
    @Test func cacheOfAnOlderSizeRuleIsIgnored() throws {
        let f = try Fixture()
        let name = "1700000000.M0P1.host"
        try f.writer.deliver(Array("x\r".utf8), fileName: name)
        var st = stat()
        #expect(stat(f.root + "/new/" + name, &st) == 0)
        let old = "pop3d-sizes 1\n2 \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) 4 \(name)\n"
        writeFile(f.root + "/" + SizeCache.fileName, Array(old.utf8))
        let md = try Maildrop.open(path: f.root)
        #expect(md.size(0) == 3)  // "x" CRLF
        #expect(md.statistics.messagesRead == 1)
        #expect(md.statistics.sizesFromCache == 0)
        md.close()
        let again = try Maildrop.open(path: f.root)
        #expect(again.size(0) == 3)
        #expect(again.statistics.sizesFromCache == 1)
    }
}
