import Glibc
import Testing
@testable import Maildrop

private func text(_ bytes: [UInt8]?) -> String { String(decoding: bytes ?? [], as: UTF8.self) }

/// A Maildir with messages under Dovecot-style names, and its dovecot-uidlist.
private struct DovecotFixture {
    let f: Fixture
    var root: String { f.root }
    var listPath: String { f.root + "/dovecot-uidlist" }

    init() throws { f = try Fixture() }

    /// Delivers a message named `name` (a base name, maybe with `,S=`); `flags` puts it in cur/.
    func deliver(_ name: String, flags: String? = nil, body: String = "Subject: x\n\nbody\n") throws {
        if let flags {
            try f.writer.deliver(Array(body.utf8), fileName: name + ":2," + flags, into: .cur)
        } else {
            try f.writer.deliver(Array(body.utf8), fileName: name)
        }
    }

    func writeList(_ s: String) { writeFile(listPath, Array(s.utf8)) }
}

@Suite struct DovecotUIDListTests {
    static let guid = "0123456789abcdef0123456789abcdef"

    // MARK: reading

    @Test func validVersion3WithExtensionsGivesDovecotUIDLsInUIDOrder() throws {
        let d = try DovecotFixture()
        // Delivery order a, b, c; UIDs say c, a, b.
        try d.deliver("1700000001.M1P1.host")
        try d.deliver("1700000002.M1P1.host,S=17,W=18", flags: "S")
        try d.deliver("1700000003.M1P1.host")
        d.writeList("""
            3 V1700000000 N9 G\(Self.guid) Xfuture
            3 :1700000003.M1P1.host
            5 W18 S17 :1700000002.M1P1.host,S=17,W=18
            7 GABC :1700000001.M1P1.host

            """)
        let before = fileBytes(d.listPath)
        let drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        #expect(drop.statistics.uidlFallback == nil)
        #expect(drop.messages.map(\.uid) == ["000000036553f100", "000000056553f100", "000000076553f100"])
        #expect(drop.messages.map(\.uniqueName) == ["1700000003.M1P1.host", "1700000002.M1P1.host", "1700000001.M1P1.host"])
        #expect(drop.statistics.uidsAssigned == 0)
        #expect(fileBytes(d.listPath) == before)  // nothing to add: not rewritten
        drop.close()
        let uw = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .uw))
        #expect(uw.messages.map(\.uid) == ["6553f10000000003", "6553f10000000005", "6553f10000000007"])
        uw.close()
        let cyrus = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .cyrus))
        #expect(cyrus.messages.map(\.uid) == ["1700000000.3", "1700000000.5", "1700000000.7"])
    }

    @Test func aPExtensionIsTheUIDLWhateverTheFormatAndOOrdersTheListing() throws {
        let d = try DovecotFixture()
        try d.deliver("1700000001.M1P1.host")
        try d.deliver("1700000002.M1P1.host")
        try d.deliver("1700000003.M1P1.host")
        try d.deliver("1700000004.M1P1.host,S=17", flags: "S")
        d.writeList("3 V42 N5 G\(Self.guid)\n1 Pold-uidl-1 :1700000001.M1P1.host\n2 :1700000002.M1P1.host\n3 O1 PUID77-99 :1700000003.M1P1.host\n4 P :1700000004.M1P1.host,S=17\n")
        for format in [UIDLFormat.dovecot, .uw, .cyrus] {
            let drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: format))
            #expect(drop.messages[0].uid == "UID77-99")  // O1: first
            #expect(drop.messages[1].uid == "old-uidl-1")
            #expect(drop.messages[2].uid == DovecotUIDList.uidl(format: format, uid: 2, uidValidity: 42))
            #expect(drop.messages[3].uid == "1700000004.M1P1.host,S=17")  // an empty P: the base name
            drop.close()
        }
    }

    @Test func recordsAreKeyedByTheBaseNameWithItsSizeFields() throws {
        let d = try DovecotFixture()
        // On disk with ,S=; in the list without: Dovecot does not match them, nor does pop3d.
        try d.deliver("1700000001.M1P1.host,S=17")
        try d.deliver("1700000002.M1P1.host", flags: "RS")
        d.writeList("3 V7 N3 G\(Self.guid)\n1 :1700000001.M1P1.host\n2 :1700000002.M1P1.host\n")
        let drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        #expect(drop.messages.map(\.uid) == ["0000000200000007", "0000000300000007"])
        #expect(drop.statistics.uidsAssigned == 1)
        #expect(text(fileBytes(d.listPath)).hasSuffix("2 :1700000002.M1P1.host\n3 :1700000001.M1P1.host,S=17\n"))
    }

    @Test func version1IsReadAndRewrittenAsVersion3() throws {
        let d = try DovecotFixture()
        try d.deliver("1700000001.M1P1.host")
        try d.deliver("1700000002.M1P1.host")
        d.writeList("1 1234 3\n2 1700000001.M1P1.host\n")
        let drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        #expect(drop.statistics.uidlFallback == nil)
        #expect(drop.messages.map(\.uid) == ["00000002000004d2", "00000003000004d2"])
        let lines = text(fileBytes(d.listPath)).split(separator: "\n")
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("3 V1234 N4 G") && lines[0].count == "3 V1234 N4 G".count + 32)
        #expect(lines[1] == "2 :1700000001.M1P1.host")
        #expect(lines[2] == "3 :1700000002.M1P1.host")
    }

    // MARK: writing beside Dovecot

    @Test func newMessagesGetUIDsFromNInDovecotsOrderAndOldRecordsStayByteForByte() throws {
        let d = try DovecotFixture()
        try d.deliver("1700000001.M1P1.host")
        // Two new ones, same second: microseconds decide (M9 before M10 numerically).
        try d.deliver("1700000005.M10P1.host")
        try d.deliver("1700000005.M9P1.host")
        let old = "3 V99 N5 G\(Self.guid) Pfmt\n4 W20 Pkeep-me :1700000001.M1P1.host\n"
        d.writeList(old)
        let drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        #expect(drop.statistics.uidsAssigned == 2)
        #expect(drop.messages.map(\.uid) == ["keep-me", "0000000500000063", "0000000600000063"])
        #expect(drop.messages.map(\.uniqueName) == ["1700000001.M1P1.host", "1700000005.M9P1.host", "1700000005.M10P1.host"])
        #expect(text(fileBytes(d.listPath)) == """
            3 V99 N7 G\(Self.guid) Pfmt
            4 W20 Pkeep-me :1700000001.M1P1.host
            5 :1700000005.M9P1.host
            6 :1700000005.M10P1.host

            """)
        #expect(!exists(d.root + "/dovecot-uidlist.lock"))
        #expect(!exists(d.root + "/dovecot-uidlist.tmp"))
        drop.close()
        // The next session reads the same UIDs and writes nothing.
        let again = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        #expect(again.statistics.uidsAssigned == 0)
        #expect(again.messages.map(\.uid) == drop.messages.map(\.uid))
    }

    @Test func aMissingListIsCreatedAsDovecotWould() throws {
        let d = try DovecotFixture()
        try d.deliver("1700000002.M1P1.host")
        try d.deliver("1700000001.M1P1.host")
        let before = UInt32(time(nil))
        let drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .cyrus))
        let lines = text(fileBytes(d.listPath)).split(separator: "\n")
        #expect(lines.count == 3)
        let header = lines[0].split(separator: " ")
        #expect(header.count == 4 && header[0] == "3" && header[2] == "N3" && header[3].count == 33)
        let uv = UInt32(header[1].dropFirst()) ?? 0
        #expect(uv >= before && uv <= UInt32(time(nil)))
        #expect(lines[1] == "1 :1700000001.M1P1.host" && lines[2] == "2 :1700000002.M1P1.host")
        #expect(drop.messages.map(\.uid) == ["\(uv).1", "\(uv).2"])
        // Dovecot's index without a list: Dovecot must create it (from the index's values).
        let x = try DovecotFixture()
        try x.deliver("1700000001.M1P1.host")
        writeFile(x.root + "/dovecot.index.log", [1, 2, 3])
        let fallback = try Maildrop.open(path: x.root, uidl: UIDLOptions(format: .dovecot))
        #expect(fallback.statistics.uidlFallback?.contains("dovecot.index.log") == true)
        #expect(fallback.messages.map(\.uid) == ["1700000001.M1P1.host"])
        #expect(!exists(x.listPath))
        // An empty maildrop creates nothing.
        let e = try DovecotFixture()
        _ = try Maildrop.open(path: e.root, uidl: UIDLOptions(format: .dovecot))
        #expect(!exists(e.listPath))
    }

    @Test func aQuickOpenNeverWritesNorReadsALargeList() throws {
        let d = try DovecotFixture()
        try d.deliver("1700000001.M1P1.host,S=17,W=18")
        d.writeList("3 V5 N1 G\(Self.guid)\n")
        let before = fileBytes(d.listPath)
        #expect(throws: MaildropError.wouldBlock) {
            try Maildrop.open(path: d.root, quick: true, uidl: UIDLOptions(format: .dovecot))
        }
        #expect(fileBytes(d.listPath) == before)
        _ = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot)).close()
        let quick = try Maildrop.open(path: d.root, quick: true, uidl: UIDLOptions(format: .dovecot))
        #expect(quick.messages.map(\.uid) == ["0000000100000005"])
        quick.close()
        // A list above quickReadBytes goes to the worker even when every message is in it.
        var records = "1 :1700000001.M1P1.host,S=17,W=18\n"
        var uid = 2
        while records.utf8.count <= DovecotUIDList.quickReadBytes {
            records += "\(uid) :1600000000.M\(uid)P1.gone\n"
            uid += 1
        }
        d.writeList("3 V5 N\(uid) G\(Self.guid)\n" + records)
        #expect(throws: MaildropError.wouldBlock) {
            try Maildrop.open(path: d.root, quick: true, uidl: UIDLOptions(format: .dovecot))
        }
        let full = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        #expect(full.messages.map(\.uid) == ["0000000100000005"])
        full.close()
        // A list that does not parse (maybe caught mid-append) is read again under the lock:
        // on a worker, not on the loop.
        d.writeList("3 V5 N2 G\(Self.guid)\n1 :1700000001.M1P1.host,S=17,W=18\n2 :17000")
        #expect(throws: MaildropError.wouldBlock) {
            try Maildrop.open(path: d.root, quick: true, uidl: UIDLOptions(format: .dovecot))
        }
    }

    @Test func aListThatCannotBeWrittenIsATemporaryFailureAndStaysUnchanged() throws {
        let d = try DovecotFixture()
        try d.deliver("1700000001.M1P1.host")
        d.writeList("3 V5 N1 G\(Self.guid)\n")
        // A directory where the temporary file goes: the write fails (even as root).
        #expect(mkdir(d.root + "/dovecot-uidlist.tmp", 0o700) == 0)
        do {
            _ = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
            Issue.record("open succeeded without writing the list")
        } catch {
            guard case .temporary(let why) = error else { Issue.record("\(error)"); return }
            #expect(why.contains("not written"))
        }
        #expect(text(fileBytes(d.listPath)) == "3 V5 N1 G\(Self.guid)\n")
        #expect(!exists(d.root + "/dovecot-uidlist.lock"))
    }

    // MARK: broken lists: fallback, file unchanged

    static let brokenLists: [(String, String)] = [
        ("3 V1 N3 G\(guid)\n1 :1700000001.M1P1.host\n2 :1700000002.M1P1", "truncated"),
        ("", "empty"),
        ("2 V1 N3\n1 :1700000001.M1P1.host\n", "unsupported version 2"),
        ("4 V1 N3\n1 :1700000001.M1P1.host\n", "unsupported version 4"),
        ("3 V1 N3\n1 :1700000001.M1P1.host\n1 :1700000002.M1P1.host\n", "not increasing"),
        ("3 V1 N3\n2 :1700000001.M1P1.host\n1 :1700000002.M1P1.host\n", "not increasing"),
        ("3 V0 N3\n1 :1700000001.M1P1.host\n", "UIDVALIDITY 0"),
        ("3 Vx N3\n1 :1700000001.M1P1.host\n", "invalid UIDVALIDITY"),
        ("3 V1 N3\n1 x:1700000001.M1P1.host\n", "invalid extension"),
        ("3 V1 N3\n1 :\n", "without a file name"),
        ("3 V1 N3\n1 :a/b\n", "'/'"),
        ("3 V1 N3\n4294967295 :1700000001.M1P1.host\n", "UID too high"),
        ("1 5 3\n3 1700000001.M1P1.host\n", "not below the next UID"),
        ("3 V1 N3\n1 :1700000001.M1P1.host\0\n", "NUL"),
        ("<html>garbage</html>\n", "version number"),
    ]

    @Test(arguments: brokenLists)
    func aBrokenListIsLeftAloneAndTheSessionFallsBackToMaildir(list: String, reason: String) throws {
        let d = try DovecotFixture()
        try d.deliver("1700000001.M1P1.host")
        try d.deliver("1700000002.M1P1.host")
        try d.deliver("1700000003.M1P1.host")
        d.writeList(list)
        let before = fileBytes(d.listPath)
        let drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        let why = try #require(drop.statistics.uidlFallback)
        #expect(why.contains(reason), "\(why)")
        #expect(drop.messages.map(\.uid) == ["1700000001.M1P1.host", "1700000002.M1P1.host", "1700000003.M1P1.host"])
        #expect(fileBytes(d.listPath) == before)
        #expect(!exists(d.root + "/dovecot-uidlist.lock"))
    }

    @Test func garbageOfAMegabyteAndAHundredMegabytesFallsBackAndStaysByteForByte() throws {
        let d = try DovecotFixture()
        try d.deliver("1700000001.M1P1.host")
        var rng = SystemRandomNumberGenerator()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        for i in chunk.indices { chunk[i] = UInt8.random(in: 0...255, using: &rng) }
        chunk[0] = UInt8(ascii: "3"); chunk[1] = 0x20  // a plausible start
        writeFile(d.listPath, chunk)
        var drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        #expect(drop.statistics.uidlFallback != nil)
        #expect(drop.messages.map(\.uid) == ["1700000001.M1P1.host"])
        #expect(fileBytes(d.listPath) == chunk)
        drop.close()
        // 100 MB: above maxFileBytes, refused without being read (and quickly).
        let fd = open(d.listPath, O_WRONLY | O_TRUNC | O_CLOEXEC)
        for _ in 0..<100 { _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        close(fd)
        let t0 = monotonicSeconds()
        drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        let elapsed = monotonicSeconds() - t0
        #expect(drop.statistics.uidlFallback?.contains("above the \(DovecotUIDList.maxFileBytes) read at most") == true)
        #expect(drop.messages.map(\.uid) == ["1700000001.M1P1.host"])
        #expect(elapsed < 2)
        var st = stat()
        #expect(stat(d.listPath, &st) == 0 && st.st_size == 100 << 20)
        let after = fileBytes(d.listPath) ?? []
        #expect(after.count == 100 << 20)
        var same = true
        for k in 0..<100 where Array(after[(k << 20)..<((k + 1) << 20)]) != chunk { same = false }
        #expect(same)
    }

    @Test func aFIFONamedDovecotUIDListIsNeverWaitedOn() throws {
        let d = try DovecotFixture()
        try d.deliver("1700000001.M1P1.host")
        #expect(mkfifo(d.listPath, 0o600) == 0)
        let drop = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
        #expect(drop.statistics.uidlFallback?.contains("FIFO") == true)
    }

    // MARK: the dotlock

    @Test func aLiveHoldersLockMakesTheLoginATemporaryFailureAfterTheWait() throws {
        let d = try DovecotFixture()
        let rootfd = open(d.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(rootfd) }
        // PID 1 is alive on every host; the lock is old enough for its owner to be checked.
        writeFile(d.root + "/dovecot-uidlist.lock", Array("1:\(DovecotDotlock.hostName())".utf8))
        var times = [timespec(tv_sec: time(nil) - 10, tv_nsec: 0), timespec(tv_sec: time(nil) - 10, tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, d.root + "/dovecot-uidlist.lock", &times, 0)
        let t0 = monotonicSeconds()
        #expect(throws: MaildropError.self) { try DovecotDotlock.acquire(rootfd: rootfd, rootPath: d.root, waitSeconds: 1) }
        #expect(monotonicSeconds() - t0 >= 0.9)
        #expect(text(fileBytes(d.root + "/dovecot-uidlist.lock")) == "1:\(DovecotDotlock.hostName())")
        // Through open: [SYS/TEMP] (.temporary), the list untouched.
        try d.deliver("1700000001.M1P1.host")
        d.writeList("3 V5 N1 G\(Self.guid)\n")
        do {
            _ = try Maildrop.open(path: d.root, uidl: UIDLOptions(format: .dovecot))
            Issue.record("open succeeded under a live lock")
        } catch {
            guard case .temporary(let why) = error else { Issue.record("\(error)"); return }
            #expect(why.contains("dovecot-uidlist.lock"))
        }
        #expect(text(fileBytes(d.listPath)) == "3 V5 N1 G\(Self.guid)\n")
    }

    @Test func aDeadOwnersLockAndAStaleLockAreOverridden() throws {
        let d = try DovecotFixture()
        let rootfd = open(d.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(rootfd) }
        let lockPath = d.root + "/dovecot-uidlist.lock"
        // A pid that cannot exist (above pid_max's largest value).
        writeFile(lockPath, Array("4194999:\(DovecotDotlock.hostName())".utf8))
        var times = [timespec(tv_sec: time(nil) - 10, tv_nsec: 0), timespec(tv_sec: time(nil) - 10, tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, lockPath, &times, 0)
        var lock = try DovecotDotlock.acquire(rootfd: rootfd, rootPath: d.root, waitSeconds: 1)
        #expect(text(fileBytes(lockPath)) == "\(getpid()):\(DovecotDotlock.hostName())")
        lock.release()
        #expect(!exists(lockPath))
        // Another host's lock, unchanged for longer than the stale timeout: overridden. The
        // ctime cannot be set back, so this checks the rule itself on a fresh lock too.
        writeFile(lockPath, Array("1:elsewhere".utf8))
        #expect(!DovecotDotlock.isStale(rootfd: rootfd))  // just written: not stale
        times = [timespec(tv_sec: time(nil) - 10, tv_nsec: 0), timespec(tv_sec: time(nil) - 10, tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, lockPath, &times, 0)
        #expect(!DovecotDotlock.isStale(rootfd: rootfd))  // another host's owner is not checked
        // ... but 120 s without a change to it or to the list make it stale (seen from later).
        let later = Int(time(nil)) + DovecotUIDList.staleLockSeconds
        #expect(!DovecotDotlock.isStale(rootfd: rootfd, now: later - 2))
        #expect(DovecotDotlock.isStale(rootfd: rootfd, now: later + 2))
        unlink(lockPath)
        lock = try DovecotDotlock.acquire(rootfd: rootfd, rootPath: d.root, waitSeconds: 1)
        // A lock replaced by someone else after an override is not removed by our release.
        // (Written beside it and renamed over it, so that it cannot reuse our lock's inode.)
        writeFile(lockPath + ".other", Array("1:elsewhere".utf8))
        #expect(rename(lockPath + ".other", lockPath) == 0)
        lock.release()
        #expect(exists(lockPath))
    }

    // MARK: scale

    @Test func aHundredThousandRecordListParses() throws {
        var s = "3 V1700000000 N100001 G\(Self.guid)\n"
        for uid in 1...100_000 { s += "\(uid) :\(1_700_000_000 + uid).M\(uid)P4242Q\(uid).mail.example.org,S=1234,W=1260\n" }
        let bytes = Array(s.utf8)
        let t0 = monotonicSeconds()
        guard case .success(let list) = DovecotUIDList.parse(bytes) else { Issue.record("does not parse"); return }
        let t1 = monotonicSeconds()
        #expect(list.records.count == 100_000)
        #expect(list.byName[DovecotUIDList.NameKey(DovecotUIDList.baseName("1700050000.M50000P4242Q50000.mail.example.org,S=1234,W=1260:2,S"))] == 49_999)
        let out = list.serialize()
        let t2 = monotonicSeconds()
        #expect(out == bytes)
        print("dovecot-uidlist 100000 records (\(bytes.count) octets): parse \((t1 - t0) * 1000) ms, serialize \((t2 - t1) * 1000) ms")
    }

    @Test func dovecotsNewFileOrder() {
        func before(_ a: String, _ b: String) -> Bool {
            DovecotUIDList.deliveredBefore(ArraySlice(Array(a.utf8)), ArraySlice(Array(b.utf8)))
        }
        #expect(before("99.M1.h", "100.M0.h"))                 // seconds first, numerically
        #expect(before("100.M9P1.h", "100.M10P1.h"))           // then microseconds
        #expect(before("100.P1M5.h", "100.P1M6.h"))            // an M anywhere in the second part
        #expect(before("100.M5.a", "100.M5.b"))                // then the name
        #expect(before("100.V1I2.h", "100.V1I3.h"))            // no microseconds: the name
        #expect(!before("100.M5.a", "100.M5.a"))
    }
}
