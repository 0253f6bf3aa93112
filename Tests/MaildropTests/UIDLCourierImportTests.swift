import Glibc
import Testing
@testable import Maildrop

/// Issue 14, helper B: Courier's `courierpop3dsizelist`, pop3d's own `pop3d.uidls`, the
/// RFC 1939 §7 rules, `importUIDLs` and `inspectUIDLs`.
@Suite struct UIDLCourierImportTests {
    static let names = ["1700000000.M7P1.host", "1700000000.M14P1.host", "1700000000.M21P1.host"]

    /// Delivers `names` (LF messages) and returns the fixture.
    func fixture(_ names: [String] = names, into folder: MessageInfo.Folder = .cur) throws -> Fixture {
        let f = try Fixture()
        for (i, n) in names.enumerated() {
            try f.writer.deliver(Array("Subject: \(i)\n\nbody \(i)\n".utf8),
                                 fileName: folder == .cur ? n + ":2," : n, into: folder)
        }
        return f
    }

    /// Courier's file for `names` as Courier 5 wrote it (UIDs in Courier's octet order).
    func courierFile(version: Int = 3) -> String {
        var s = "/\(version) 4 1795975084\n"
        for (n, uid) in [("1700000000.M14P1.host", 1), ("1700000000.M21P1.host", 2), ("1700000000.M7P1.host", 3)] {
            s += "\(n):2, 40 \(uid):1795975084" + (version == 3 ? ":0" : "") + "\n"
        }
        return s
    }

    func uidls(_ drop: Maildrop) -> [String] { drop.messages.map(\.uid) }

    // MARK: Courier's file

    @Test(arguments: [2, 3]) func courierFormatServesCourierUIDLsInCourierOrder(version: Int) throws {
        let f = try fixture()
        writeFile(f.root + "/courierpop3dsizelist", Array(courierFile(version: version).utf8))
        let drop = try Maildrop.open(path: f.root, uidl: UIDLOptions(format: .courier))
        #expect(uidls(drop) == ["UID1-1795975084", "UID2-1795975084", "UID3-1795975084"])
        #expect(drop.messages.map(\.uniqueName) == ["1700000000.M14P1.host", "1700000000.M21P1.host", "1700000000.M7P1.host"])
        #expect(drop.statistics.uidlFallback == nil)
    }

    @Test func courierUniqueNamesAreMaildirNames() {
        for name in ["1.M1P1.host", "1.M1P1.host,S=12:2,S", "1.M1P1.host,S=12,W=13:2,", "1.a,X=1,S=x,W=:2,",
                     ",S=1", "1.a,,S=2,b:2,", "1.a:2,,S=3", "1.a,S", "1.a,s=1,W=2"] {
            #expect(CourierSizeList.uniqueName(ArraySlice(name.utf8)) == MaildirName(name).uniqueName, "\(name)")
        }
    }

    /// Regression: the parser once mutated a copy of its result per line, copying the whole
    /// dictionary each time (1.8 s for 10,000 records in a release build, quadratic). Ten times
    /// the records must cost about ten times the CPU, not a hundred: a ratio of this thread's
    /// CPU time, so neither a loaded machine nor a sanitizer's slowdown (AddressSanitizer: 55 s
    /// of wall time for the 100,000 records on a loaded 2-core machine) decides the result.
    @Test func hundredThousandCourierRecordsParseInLinearTime() throws {
        func records(_ count: Int) -> [UInt8] {
            var text = "/3 \(count + 1) 1795975084\n"
            text.reserveCapacity(count * 100)
            for i in 0..<count {
                text += "\(1_700_000_000 + i).M\(i)P1V00000000000000FCI0000000000ABCDEF.host,S=1234:2,S 1300 \(i + 1):1795975084:0\n"
            }
            return Array(text.utf8)
        }
        let small = records(10_000), large = records(100_000)
        var started = threadCPUSeconds()
        let smallList = try CourierSizeList.parse(small).get()
        let smallTook = threadCPUSeconds() - started
        started = threadCPUSeconds()
        let list = try CourierSizeList.parse(large).get()
        let took = threadCPUSeconds() - started
        #expect(smallList.uidls.count == 10_000)
        #expect(list.uidls.count == 100_000)
        #expect(list.uidls["1700000007.M7P1V00000000000000FCI0000000000ABCDEF.host"] == "UID8-1795975084")
        // Linear: about 10; the quadratic parser: about 100.
        #expect(took < 30 * max(smallTook, 0.01), "10,000 records: \(smallTook) s of CPU, 100,000: \(took) s")
    }

    /// CPU time of the calling thread, seconds (getrusage RUSAGE_THREAD).
    private func threadCPUSeconds() -> Double {
        var usage = rusage()
        _ = getrusage(1, &usage)  // RUSAGE_THREAD (Glibc imports the constant with another type)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    @Test func courierUIDLForms() {
        #expect(CourierSizeList.uidlFor(uid: 5, uidValidity: 0, fileName: ArraySlice("a".utf8)) == "UID5")
        #expect(CourierSizeList.uidlFor(uid: 0, uidValidity: 9, fileName: ArraySlice("12.a+b'c\" d:2,S".utf8)) == "12.a+2Bb+27c+22+20d")
    }

    @Test func messagesNotInCourierFileKeepMaildirUIDLAndFileIsNotWritten() throws {
        var names = Self.names
        names.append("1700000099.M1P1.host")
        let f = try fixture(names)
        writeFile(f.root + "/courierpop3dsizelist", Array(courierFile().utf8))
        let drop = try Maildrop.open(path: f.root, uidl: UIDLOptions(format: .courier))
        #expect(uidls(drop).last == "1700000099.M1P1.host")
        #expect(drop.statistics.uidlFallback == nil)
        let after = try String(decoding: readBytes(f.root + "/courierpop3dsizelist"), as: UTF8.self)
        #expect(after == courierFile())
    }

    static let broken: [(String, String, String)] = [
        ("truncated", "/3 4 1\na:2, 40 1:1:0\nb:2, 40 2:1", "truncated"),
        ("wrong version", "/4 4 1\na:2, 40 1:1:0\n", "version 4"),
        ("duplicate UID", "/3 4 1\n1700000000.M7P1.host:2, 40 1:1:0\n1700000000.M14P1.host:2, 40 1:1:0\n", "given twice"),
        ("duplicate name", "/3 4 1\n1700000000.M7P1.host:2, 40 1:1:0\n1700000000.M7P1.host:2,S 40 2:1:0\n", "second record"),
        ("garbage", "\u{1}\u{2}garbage\n", "header"),
        ("bad field", "/3 4 1\na:2, forty 1:1:0\n", "size"),
        ("empty", "", "empty"),
        ("line too long", "/3 4 1\n" + String(repeating: "a", count: CourierSizeList.maxLineBytes) + ":2, 40 1:1:0\n",
         "longer than \(CourierSizeList.maxLineBytes) octets"),
    ]

    @Test(arguments: broken) func brokenCourierFileFallsBackToMaildirAndIsLeftAlone(_ c: (String, String, String)) throws {
        let f = try fixture()
        writeFile(f.root + "/courierpop3dsizelist", Array(c.1.utf8))
        let drop = try Maildrop.open(path: f.root, uidl: UIDLOptions(format: .courier))
        #expect(Set(uidls(drop)) == Set(Self.names), "\(c.0)")
        let why = try #require(drop.statistics.uidlFallback, "\(c.0)")
        #expect(why.contains(c.2), "\(c.0): \(why)")
        #expect(try readBytes(f.root + "/courierpop3dsizelist") == Array(c.1.utf8))
        drop.close()
        // The import refuses it and writes nothing.
        #expect(throws: UIDLStateError.self) { try Maildrop.importUIDLs(path: f.root, from: .courier) }
        #expect(!exists(f.root + "/pop3d.uidls"))
    }

    @Test func oversizedCourierFileIsRefusedUnread() throws {
        let f = try fixture()
        let fd = open(f.root + "/courierpop3dsizelist", O_WRONLY | O_CREAT, 0o600)
        #expect(ftruncate(fd, off_t(100_000_000)) == 0)  // 100 MB of NULs, sparse
        close(fd)
        let drop = try Maildrop.open(path: f.root, uidl: UIDLOptions(format: .courier))
        #expect(drop.statistics.uidlFallback?.contains("read at most") == true)
        drop.close()
        // A quick open leaves a file above its bound to a worker.
        #expect(throws: MaildropError.wouldBlock) {
            try Maildrop.open(path: f.root, quick: true, uidl: UIDLOptions(format: .courier))
        }
        do {
            _ = try Maildrop.importUIDLs(path: f.root, from: .courier)
            Issue.record("import of 100 MB of garbage succeeded")
        } catch {
            #expect(error.description.contains("nothing changed"))
        }
        #expect(!exists(f.root + "/pop3d.uidls"))
    }

    // MARK: import and pop3d.uidls

    @Test func importKeepsCourierUIDLsUnderMaildirFormat() throws {
        let f = try fixture()
        writeFile(f.root + "/courierpop3dsizelist", Array(courierFile().utf8))
        let report = try Maildrop.importUIDLs(path: f.root, from: .courier)
        #expect(report.imported == 3 && report.added == 3 && report.written)
        let drop = try Maildrop.open(path: f.root)
        #expect(uidls(drop) == ["UID3-1795975084", "UID1-1795975084", "UID2-1795975084"])
        #expect(drop.statistics.importedUIDLs == 3)
        drop.close()
        // Again: nothing to write.
        #expect(try Maildrop.importUIDLs(path: f.root, from: .courier).written == false)
        // A later message gets the maildir UIDL; imported ones win over the courier format too.
        var w = f.writer
        let late = try w.deliver("Subject: late\n\nx\n", seconds: 1_700_000_500)
        let courier = try Maildrop.open(path: f.root, uidl: UIDLOptions(format: .courier))
        #expect(uidls(courier) == ["UID1-1795975084", "UID2-1795975084", "UID3-1795975084", late])
    }

    @Test func importTakesTheMaildropLock() throws {
        let f = try fixture()
        writeFile(f.root + "/courierpop3dsizelist", Array(courierFile().utf8))
        let session = try Maildrop.open(path: f.root)
        do {
            _ = try Maildrop.importUIDLs(path: f.root, from: .courier)
            Issue.record("import ran beside a session")
        } catch {
            #expect(error.description.contains("in use"))
        }
        #expect(!exists(f.root + "/pop3d.uidls"))
        session.close()
        #expect(try Maildrop.importUIDLs(path: f.root, from: .courier).written)
    }

    @Test func brokenOwnStateIsNotUsedNorRewritten() throws {
        let f = try fixture()
        let garbage = Array("pop3d-uidls 1\nUID1 1700000000.M7P1.host\nUID1 1700000000.M14P1.host\n".utf8)
        writeFile(f.root + "/pop3d.uidls", garbage)
        let drop = try Maildrop.open(path: f.root)
        #expect(Set(uidls(drop)) == Set(Self.names))
        #expect(drop.statistics.importedUIDLsIgnored?.contains("given twice") == true)
        drop.close()
        writeFile(f.root + "/courierpop3dsizelist", Array(courierFile().utf8))
        #expect(throws: UIDLStateError.self) { try Maildrop.importUIDLs(path: f.root, from: .courier) }
        #expect(try readBytes(f.root + "/pop3d.uidls") == garbage)
    }

    @Test func conflictingImportChangesNothing() throws {
        let f = try fixture()
        let mine = "pop3d-uidls 1\nold-1 1700000000.M7P1.host\n"
        writeFile(f.root + "/pop3d.uidls", Array(mine.utf8))
        writeFile(f.root + "/courierpop3dsizelist", Array(courierFile().utf8))
        do {
            _ = try Maildrop.importUIDLs(path: f.root, from: .courier)
            Issue.record("conflicting import succeeded")
        } catch {
            #expect(error.description.contains("already has the imported UIDL"))
        }
        #expect(try readBytes(f.root + "/pop3d.uidls") == Array(mine.utf8))
    }

    @Test func goneMessagesAreDroppedFromOwnStateByAWorkerOpen() throws {
        let f = try fixture()
        writeFile(f.root + "/courierpop3dsizelist", Array(courierFile().utf8))
        _ = try Maildrop.importUIDLs(path: f.root, from: .courier)
        #expect(unlink(f.root + "/cur/1700000000.M14P1.host:2,") == 0)
        let quick = try Maildrop.open(path: f.root, quick: true)
        #expect(quick.statistics.importedUIDLsPruned == 0)  // a quick open never rewrites it
        quick.close()
        let drop = try Maildrop.open(path: f.root)
        #expect(drop.statistics.importedUIDLsPruned == 1)
        #expect(uidls(drop) == ["UID3-1795975084", "UID2-1795975084"])
        let text = String(decoding: try readBytes(f.root + "/pop3d.uidls"), as: UTF8.self)
        #expect(text == "pop3d-uidls 1\nUID2-1795975084 1700000000.M21P1.host\nUID3-1795975084 1700000000.M7P1.host\n")
    }

    @Test func xUIDLImportRenamesDuplicatesAndRefusesInvalidOnes() throws {
        let f = try Fixture()
        let headers = ["X-UIDL: abc", "x-uidl:  abc ", "X-UIDL: abc", "X-Other: 1"]
        for (i, h) in headers.enumerated() {
            try f.writer.deliver(Array("Received: x\n\(h)\nSubject: \(i)\n\nX-UIDL: body\n".utf8),
                                 fileName: "170000000\(i).M1P1.host")
        }
        let report = try Maildrop.importUIDLs(path: f.root, from: .xUIDL)
        #expect(report.imported == 3 && report.renamedDuplicates == 2 && report.notInSource == 1)
        let drop = try Maildrop.open(path: f.root)
        #expect(uidls(drop) == ["abc", "abc-2", "abc-3", "1700000003.M1P1.host"])
        drop.close()
        #expect(try Maildrop.importUIDLs(path: f.root, from: .xUIDL).written == false)

        let g = try Fixture()
        try g.writer.deliver(Array("X-UIDL: has space\n\nx\n".utf8), fileName: "1700000000.M1P1.host")
        do {
            _ = try Maildrop.importUIDLs(path: g.root, from: .xUIDL)
            Issue.record("an X-UIDL with a space was imported")
        } catch {
            #expect(error.description.contains("RFC 1939"))
        }
        #expect(!exists(g.root + "/pop3d.uidls"))
    }

    @Test func xUIDLHeaderParsing() {
        #expect(XUIDLHeader.find(in: Array("A: 1\r\nX-UIDL: v1\r\n\r\nX-UIDL: v2\r\n".utf8)) == Array("v1".utf8))
        #expect(XUIDLHeader.find(in: Array("A: 1\n\nX-UIDL: v2\n".utf8)) == nil)
        #expect(XUIDLHeader.find(in: Array("X-UIDL:\n v3\n".utf8)) == Array("v3".utf8))
    }

    // MARK: RFC 1939 §7

    @Test func rulesRenameDuplicatesAsDovecotAndHashInvalidOnes() throws {
        let f = try Fixture()
        let names = (0..<5).map { "170000000\($0).M1P1.host" }
        for n in names { try f.writer.deliver(Array("x\n".utf8), fileName: n) }
        // What a format could hand over (Dovecot's `P` records may repeat a UIDL): set directly.
        let drop = try Maildrop.open(path: f.root)
        drop.messages[0].uid = "x"
        drop.messages[1].uid = "x"
        drop.messages[2].uid = "x-2"
        drop.messages[3].uid = "x"
        drop.messages[4].uid = String(repeating: "y", count: 71)
        drop.enforceUIDLRules()
        #expect(uidls(drop)[0..<4] == ["x", "x-2", "x-2-2", "x-3"])
        #expect(uidls(drop)[4] == SHA256.hex(Array(String(repeating: "y", count: 71).utf8)))
        #expect(drop.statistics.uidlsRenamed == 3 && drop.statistics.uidlsRepaired == 1)
        for u in uidls(drop) { #expect(UIDLRules.isValid(u.utf8)) }
        #expect(Set(uidls(drop)).count == 5)
        #expect(!UIDLRules.isValid("".utf8) && !UIDLRules.isValid("a b".utf8) && UIDLRules.isValid("~!".utf8))
    }

    // MARK: check

    @Test func inspectShowsEverySource() throws {
        let f = try fixture()
        writeFile(f.root + "/courierpop3dsizelist", Array(courierFile().utf8))
        let view = try Maildrop.inspectUIDLs(path: f.root, format: .courier)
        #expect(view.rows.map(\.served) == ["UID1-1795975084", "UID2-1795975084", "UID3-1795975084"])
        #expect(view.rows.map(\.servedFrom) == ["courier", "courier", "courier"])
        #expect(view.rows.map(\.maildir) == ["1700000000.M14P1.host", "1700000000.M21P1.host", "1700000000.M7P1.host"])
        #expect(view.rows.allSatisfy { $0.imported == nil && $0.xUIDL == nil })
    }
}

func readBytes(_ path: String) throws -> [UInt8] {
    guard let bytes = fileBytes(path) else { throw MaildropError.permanent("open \(path)") }
    return bytes
}
