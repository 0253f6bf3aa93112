import Glibc
import Testing
@testable import Maildrop
import TestSupport

/// The login index (`pop3d.index`, issue 14): a warm login lists no folder, and every case in
/// which the folders changed without the index knowing is listed from disk.
@Suite struct LoginIndexTests {
    /// Above `LoginIndex.minimumMessages`, so the maildrop keeps an index.
    static let count = LoginIndex.minimumMessages + 44

    static func fill(_ f: Fixture, count: Int = LoginIndexTests.count, from first: Int = 0) throws {
        for i in first..<(first + count) {
            // No W= field: a cold open must read every file.
            _ = try f.writer.deliver(Array("Subject: \(i)\n\nbody \(i)\n".utf8),
                                     fileName: "\(1_700_000_000 + i / 3).M\(i % 3)P\(i).host")
        }
    }

    /// `TestSupport.waitForFileSystemClock` for the fixture's Maildir.
    static func waitForFileSystemClock(_ root: String) {
        TestSupport.waitForFileSystemClock(maildir: root)
    }

    static func open(_ f: Fixture) throws -> Maildrop {
        let md = try Maildrop.open(path: f.root)
        md.close()
        return md
    }

    /// What a listing from scratch gives (no index, no size cache) for comparison.
    static func fromScratch(_ f: Fixture) throws -> [MessageInfo] {
        let saved = f.temp.path + "/saved.index"
        rename(f.root + "/" + LoginIndex.fileName, saved)
        unlink(f.root + "/" + SizeCache.fileName)
        let md = try Maildrop.open(path: f.root)
        md.close()
        unlink(f.root + "/" + LoginIndex.fileName)
        rename(saved, f.root + "/" + LoginIndex.fileName)
        return md.messages
    }

    @Test func warmLoginListsNoFolderAndGivesTheSameListing() throws {
        let f = try Fixture()
        try Self.fill(f)
        // Names whose UIDL is their SHA-256 (not ASCII; longer than 70 octets), one in cur/
        // with flags and size fields: stored and read back as they were listed.
        _ = try f.writer.deliver(Array("Subject: é\n\nx\n".utf8), fileName: "1700000500.M1P1.hôte")
        _ = try f.writer.deliver(Array("Subject: empty unique name\n\nx\n".utf8), fileName: ",W=3")
        _ = try f.writer.deliver(Array("Subject: long\n\nx\n".utf8),
                                 fileName: "1700000501.M1P1." + String(repeating: "h", count: 80) + ",S=17,W=19:2,S",
                                 into: .cur)
        Self.waitForFileSystemClock(f.root)
        let cold = try Self.open(f)
        #expect(cold.statistics.messagesRead == Self.count + 2)
        #expect(cold.count == Self.count + 3)
        #expect(cold.messages.filter { $0.uid.utf8.count == 64 }.count == 3)
        #expect(cold.statistics.foldersListed == 2)
        #expect(cold.statistics.indexWritten)
        #expect(exists(f.root + "/" + LoginIndex.fileName))
        #expect(!exists(f.root + "/" + LoginIndex.tempName))
        Self.waitForFileSystemClock(f.root)
        let warm = try Self.open(f)
        #expect(warm.statistics.foldersListed == 0)
        #expect(warm.statistics.messagesRead == 0)
        #expect(warm.statistics.sizesFromIndex == Self.count + 3)
        #expect(!warm.statistics.indexWritten)
        #expect(warm.messages == cold.messages)
        // A quick (event-loop) open leaves an indexed maildrop to the workers at once.
        #expect(throws: MaildropError.wouldBlock) { try Maildrop.open(path: f.root, quick: true) }
    }

    /// A delivery in the same timestamp tick as the index's clock leaves the folder's times as
    /// recorded; such an index must not be trusted. Made here by recording, as the folder's
    /// state, its state after the delivery, with a clock equal to its change time.
    @Test func deliveryInTheSameTickAsTheIndexIsListed() throws {
        let f = try Fixture()
        try Self.fill(f)
        _ = try Self.open(f)
        _ = try f.writer.deliver(Array("Subject: late\n\nlate\n".utf8), fileName: "1800000000.M0P1.late")
        var st = stat()
        stat(f.root + "/new", &st)
        let rootfd = try Self.rootFD(f)
        defer { close(rootfd) }
        guard case .valid(var index) = LoginIndex.load(rootfd: rootfd) else {
            Issue.record("no index")
            return
        }
        index.new = LoginIndex.FolderState(st)
        index.clock = LoginIndex.Stamp(st.st_ctim)
        #expect(index.save(rootfd: rootfd, rootPath: f.root) == nil)
        let md = try Self.open(f)
        #expect(md.count == Self.count + 1)
        #expect(md.messages.last?.fileName == "1800000000.M0P1.late")
        #expect(md.statistics.foldersListed == 1)  // new/ only: cur/ is as recorded
        #expect(md.statistics.messagesRead == 1)  // the new one; the rest from the index
        #expect(md.messages == (try Self.fromScratch(f)))
        // The control: the same index with a clock one nanosecond later is trusted, and
        // would miss the message (which is why the rule compares with the clock).
        index.clock = LoginIndex.Stamp(sec: Int64(st.st_ctim.tv_sec), nsec: Int64(st.st_ctim.tv_nsec) + 1)
        #expect(index.trusts(.new, now: LoginIndex.FolderState(st)))
    }

    @Test func deliveryBetweenTheListingAndTheIndexWriteAppearsNextTime() throws {
        let f = try Fixture()
        try Self.fill(f)
        let root = f.root
        Maildrop.listingTestHooks.withLock {
            $0[root] = {
                // As an MDA does: written in tmp/, renamed into new/.
                writeFile(root + "/tmp/1800000000.M0P2.race", Array("Subject: race\n\nrace\n".utf8))
                rename(root + "/tmp/1800000000.M0P2.race", root + "/new/1800000000.M0P2.race")
            }
        }
        let first = try Self.open(f)
        Maildrop.listingTestHooks.withLock { $0[f.root] = nil }
        #expect(first.count == Self.count)  // listed before the delivery
        #expect(first.statistics.indexWritten)
        Self.waitForFileSystemClock(f.root)
        let second = try Self.open(f)
        #expect(second.count == Self.count + 1)
        #expect(second.messages.last?.fileName == "1800000000.M0P2.race")
        #expect(second.statistics.foldersListed == 1)
    }

    @Test func messagesRenamedAndRemovedByAnotherProgramAreNotServedFromTheIndex() throws {
        let f = try Fixture()
        try Self.fill(f)
        let cold = try Self.open(f)
        let moved = cold.messages[3], removed = cold.messages[10]
        #expect(rename(f.root + "/new/" + moved.fileName, f.root + "/cur/" + moved.fileName + ":2,S") == 0)
        #expect(unlink(f.root + "/new/" + removed.fileName) == 0)
        // (Past the changes' timestamp tick: an index written within it is not trusted.)
        Self.waitForFileSystemClock(f.root)
        let md = try Self.open(f)
        #expect(md.count == Self.count - 1)
        #expect(!md.messages.contains { $0.uniqueName == removed.uniqueName })
        let now = md.messages.first { $0.uniqueName == moved.uniqueName }
        #expect(now?.folder == .cur)
        #expect(now?.fileName == moved.fileName + ":2,S")
        #expect(now?.size == moved.size)
        #expect(md.statistics.messagesRead == 0)  // the renamed file's size came from the index
        #expect(md.messages == (try Self.fromScratch(f)))
        Self.waitForFileSystemClock(f.root)
        let warm = try Self.open(f)
        #expect(warm.statistics.foldersListed == 0)
        #expect(warm.messages == md.messages)
    }

    @Test func maildirWipedAndRefilledInPlaceIsListedFromDisk() throws {
        let f = try Fixture()
        try Self.fill(f)
        _ = try Self.open(f)
        Self.waitForFileSystemClock(f.root)
        // Every message removed and other mail delivered, the index left in place: the folders
        // keep their inodes, and even with their modification times set back as recorded
        // (rsync -t), their change times tell.
        var st = stat()
        stat(f.root + "/new", &st)
        for name in listNames(f.root + "/new") { unlink(f.root + "/new/" + name) }
        try Self.fill(f, count: Self.count + 5, from: 5_000)
        var times = [st.st_atim, st.st_mtim]
        utimensat(AT_FDCWD, f.root + "/new", &times, 0)
        let md = try Self.open(f)
        #expect(md.count == Self.count + 5)
        #expect(md.statistics.foldersListed >= 1)
        #expect(md.messages == (try Self.fromScratch(f)))
    }

    @Test func maildirReplacedByACopyWithItsIndexIsListedFromDisk() throws {
        let f = try Fixture()
        try Self.fill(f)
        _ = try Self.open(f)
        let index = (fileBytes(f.root + "/" + LoginIndex.fileName) ?? [])
        // Wiped, state files included, and made anew (new inodes) with other mail, then the
        // old index put back (a restore from backup): it describes other directories.
        TempDirectory.removeTree(f.root)
        let writer = try MaildirWriter(root: f.root)
        for i in 0..<(Self.count + 3) {
            _ = try writer.deliver(Array("Subject: r\(i)\n\nrefill\n".utf8), fileName: "\(1_750_000_000 + i).M0P9.host")
        }
        writeFile(f.root + "/" + LoginIndex.fileName, index)
        let md = try Self.open(f)
        #expect(md.count == Self.count + 3)
        // New inodes, or (ext4 reuses freed inode numbers) the old numbers with new change times.
        #expect(md.statistics.foldersListed == 2)
        #expect(md.statistics.indexWritten)
        #expect(md.messages == (try Self.fromScratch(f)))
        // And without any state file: the same listing.
        TempDirectory.removeTree(f.root)
        let again = try MaildirWriter(root: f.root)
        for i in 0..<(Self.count + 3) {
            _ = try again.deliver(Array("Subject: r\(i)\n\nrefill\n".utf8), fileName: "\(1_750_000_000 + i).M0P9.host")
        }
        let fresh = try Self.open(f)
        #expect(fresh.messages == md.messages)
    }

    @Test func corruptedIndexIsDiscardedAndRewritten() throws {
        let f = try Fixture()
        try Self.fill(f)
        let cold = try Self.open(f)
        let path = f.root + "/" + LoginIndex.fileName
        let good = (fileBytes(path) ?? [])
        var flipped = good
        flipped[good.count / 2] ^= 0x40
        var badVersion = good
        badVersion[8] = 9
        var garbage = [UInt8](repeating: 0x41, count: 1 << 20)
        garbage.replaceSubrange(0..<8, with: LoginIndex.magic)
        for (what, bytes) in [("flipped octet", flipped), ("truncated", Array(good.prefix(good.count - 7))),
                              ("other version", badVersion), ("garbage", garbage), ("empty", [])] {
            writeFile(path, bytes)
            let md = try Self.open(f)
            #expect(md.statistics.indexDiscarded != nil, "\(what)")
            #expect(md.statistics.indexWritten, "\(what)")
            #expect(md.messages == cold.messages, "\(what)")
            if case .success = LoginIndex.parse((fileBytes(path) ?? [])) {} else { Issue.record("not rewritten: \(what)") }
        }
        // A well-formed index (right checksum) whose entry names a path is refused as a whole.
        guard case .success(var index) = LoginIndex.parse(good) else {
            Issue.record("no index")
            return
        }
        index.entries[0].info.fileName = "../../etc/passwd"
        if let forged = index.serialize() {
            if case .success = LoginIndex.parse(forged) { Issue.record("a path was accepted as a file name") }
        }
        index.entries[0].info.fileName = cold.messages[0].fileName
        index.entries[0].info.size = Int.max  // no file of its size has this CRLF size
        if let forged = index.serialize() {
            if case .success = LoginIndex.parse(forged) { Issue.record("an impossible size was accepted") }
        }
        // A symbolic link under the index's name (or its temporary name) is never followed:
        // the index is rewritten in its place and the link's target stays as it was.
        let victim = f.temp.path + "/victim"
        writeFile(victim, good)
        unlink(path)
        #expect(symlink(victim, path) == 0)
        #expect(symlink(victim, f.root + "/" + LoginIndex.tempName) == 0)
        let linked = try Self.open(f)
        #expect(linked.statistics.indexDiscarded != nil)
        #expect(linked.statistics.indexWritten)
        #expect(linked.messages == cold.messages)
        #expect((fileBytes(victim) ?? []) == good)
        var lst = stat()
        #expect(lstat(path, &lst) == 0 && (lst.st_mode & S_IFMT) == S_IFREG)
        // A FIFO under the index's name neither blocks nor is trusted; it is replaced.
        unlink(path)
        #expect(mkfifo(path, 0o600) == 0)
        let md = try Self.open(f)
        #expect(md.statistics.indexDiscarded != nil)
        #expect(md.messages == cold.messages)
        var st = stat()
        #expect(lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG)
    }

    @Test func maildropThatShrankLosesItsIndexAndIsListedOnTheLoopAgain() throws {
        let f = try Fixture()
        try Self.fill(f)
        _ = try Self.open(f)
        for name in listNames(f.root + "/new").prefix(Self.count - 10) { unlink(f.root + "/new/" + name) }
        #expect(throws: MaildropError.wouldBlock) { try Maildrop.open(path: f.root, quick: true) }
        let md = try Self.open(f)
        #expect(md.count == 10)
        #expect(!exists(f.root + "/" + LoginIndex.fileName))
        #expect(exists(f.root + "/" + SizeCache.fileName))  // the cache takes over
        let quick = try Maildrop.open(path: f.root, quick: true)
        #expect(quick.messages == md.messages)
        #expect(quick.statistics.messagesRead == 0)
    }

    @Test func hundredThousandMessages() throws {
        let f = try Fixture()
        let body = Array("From: a@b\nSubject: s\n\nbody line\n".utf8)
        for i in 0..<100_000 {
            _ = try f.writer.deliver(body, fileName: "\(1_700_000_000 + i / 7).M\(i % 7)P1.host")
        }
        Self.waitForFileSystemClock(f.root)
        let t0 = monotonicSeconds()
        let cold = try Self.open(f)
        let t1 = monotonicSeconds()
        #expect(cold.count == 100_000)
        #expect(cold.statistics.indexWritten)
        Self.waitForFileSystemClock(f.root)
        let t2 = monotonicSeconds()
        let warm = try Self.open(f)
        let t3 = monotonicSeconds()
        #expect(warm.statistics.foldersListed == 0)
        #expect(warm.statistics.sizesFromIndex == 100_000)
        #expect(warm.messages == cold.messages)
        #expect(warm.totalSize == 100_000 * crlf(body).count)
        print("maildrop 100000 messages: cold open \((t1 - t0) * 1000) ms, warm open \((t3 - t2) * 1000) ms")
    }

    static func rootFD(_ f: Fixture) throws -> Int32 {
        let fd = Glibc.open(f.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 { throw MaildropError.temporary("open \(f.root)") }
        return fd
    }

}

extension LoginIndexTests {
    /// An index written under the plain wire-size rule is not read under `oe-ns-eoh` (and back):
    /// its sizes would be 2 octets short for a message without an end of header.
    @Test func indexOfAnotherSizeRuleIsNotTrusted() throws {
        let f = try Fixture()
        try Self.fill(f)
        _ = try f.writer.deliver(Array("Subject: headers only\n".utf8), fileName: "1700009999.M1P1.host")
        Self.waitForFileSystemClock(f.root)
        let plain = try Self.open(f)
        #expect(plain.statistics.indexWritten)
        let oe = WireSizeRule(addsMissingHeaderEnd: true)
        let warm = try Maildrop.open(path: f.root, wireSize: oe)
        warm.close()
        #expect(warm.statistics.indexDiscarded != nil)
        let plainSize = try #require(plain.messages.last?.size)
        #expect(warm.messages.last?.size == plainSize + 2)
        #expect(warm.statistics.indexWritten)
        // And back: the oe index is not read under the plain rule either.
        Self.waitForFileSystemClock(f.root)
        let back = try Maildrop.open(path: f.root)
        back.close()
        #expect(back.statistics.indexDiscarded != nil)
        #expect(back.messages.last?.size == plainSize)
    }
}

extension LoginIndexTests {
    /// A cold login of many files reads them on `Maildrop.coldReadThreads` threads: every size
    /// equals the one file-by-file measuring gives, and a cancelled login stops with `.cancelled`.
    @Test func coldReadsInParallelGiveTheSerialSizes() throws {
        let f = try Fixture()
        var rng = SystemRandomNumberGenerator()
        let count = Maildrop.parallelMeasureMinimum * 3
        for i in 0..<count {
            var body: [UInt8] = Array("Subject: \(i)\n\n".utf8)
            for _ in 0..<Int.random(in: 0...40, using: &rng) {
                body += Array(String(repeating: "x", count: Int.random(in: 0...90, using: &rng)).utf8)
                body += Bool.random(using: &rng) ? [10] : [13, 10]
            }
            if Bool.random(using: &rng) { body += Array(".no final newline".utf8) }
            _ = try f.writer.deliver(body, fileName: "\(1_700_000_000 + i).M1P\(i).host")
        }
        let md = try Maildrop.open(path: f.root)
        md.close()
        #expect(md.count == count)
        #expect(md.statistics.messagesRead == count)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Maildrop.measureChunkBytes, alignment: 16)
        defer { buffer.deallocate() }
        let newfd = Glibc.open(f.root + "/new", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(newfd) }
        for m in md.messages {
            let serial = try CRLFSizeCounter.measure(dirfd: newfd, name: m.fileName, path: m.fileName, buffer: buffer)
            #expect(m.size == serial, "\(m.fileName)")
        }
        // A cold login cancelled before it starts reading stops with .cancelled.
        unlink(f.root + "/" + LoginIndex.fileName)
        unlink(f.root + "/" + SizeCache.fileName)
        let flag = CancellationFlag()
        flag.cancel()
        #expect(throws: MaildropError.cancelled) { try Maildrop.open(path: f.root, cancellation: flag) }
    }
}

extension LoginIndexTests {
    /// An index larger than `LoginIndex.maxFileBytes` is not read (a sparse file: no octet is
    /// written), discarded and rebuilt by the same login, which lists the folders.
    @Test func indexAboveItsLimitIsNotReadAndIsRebuilt() throws {
        let f = try Fixture()
        try Self.fill(f)
        Self.waitForFileSystemClock(f.root)
        _ = try Self.open(f)
        let path = f.root + "/" + LoginIndex.fileName
        #expect(truncate(path, off_t(LoginIndex.maxFileBytes + 1)) == 0)
        let md = try Self.open(f)
        let why = try #require(md.statistics.indexDiscarded)
        #expect(why.contains("above the \(LoginIndex.maxFileBytes) read at most"), "\(why)")
        #expect(md.statistics.foldersListed == 2)
        #expect(md.count == Self.count)
        #expect(md.statistics.indexWritten)
        var st = stat()
        #expect(stat(path, &st) == 0 && Int(st.st_size) < LoginIndex.maxFileBytes)
    }
}
