import Glibc
import Testing
@testable import Maildrop

/// Issue 17: `pop3d.sizes` kept in memory once parsed (`SizeCacheMemo`), used again only while
/// the file is the same one, and bounded.
@Suite struct SizeCacheMemoTests {
    /// Two messages whose names carry no W=, so that every login needs the size cache.
    private func maildrop() throws -> Fixture {
        let f = try Fixture()
        try f.writer.deliver(Array("a\nb\n".utf8), fileName: "1700000000.M0P1.host")
        try f.writer.deliver(Array("keep\n".utf8), fileName: "1700000001.M0P1.host")
        return f
    }

    @Test func secondReadOfAnUnchangedCacheComesFromMemory() throws {
        let f = try maildrop()
        let first = try Maildrop.open(path: f.root)  // measures both, writes the cache
        #expect(first.statistics.messagesRead == 2 && first.statistics.cacheWritten)
        first.close()
        // The same text under a new inode, as another program would write it: not the file
        // this process wrote (and remembered, `cacheTheListingWroteIsRememberedAsWritten`).
        let cachePath = f.root + "/" + SizeCache.fileName
        writeFile(cachePath + ".new", readFile(cachePath))
        #expect(rename(cachePath + ".new", cachePath) == 0)
        let second = try Maildrop.open(path: f.root)  // reads and parses the file, remembers it
        #expect(second.statistics.sizeCacheFromMemory == false)
        #expect(second.statistics.sizesFromCache == 2)
        second.close()
        let third = try Maildrop.open(path: f.root)
        #expect(third.statistics.sizeCacheFromMemory)
        #expect(third.statistics.sizesFromCache == 2 && third.statistics.messagesRead == 0)
        #expect([third.size(0), third.size(1)] == [6, 6])
        third.close()
    }

    /// A cache the listing writes is remembered as written (the `fstat` after its rename, the
    /// same entries `parse` gives of its octets): the next login takes it from memory instead of
    /// reading back the file it just wrote, with the same sizes, and so after a rewrite.
    /// Not caught here: an `fstat` taken before the rename instead of after. The rename changes
    /// the inode's ctime, but on kernels whose file timestamps are coarse (a jiffy) the write
    /// and the rename usually share a tick, so both `fstat`s would agree.
    @Test func cacheTheListingWroteIsRememberedAsWritten() throws {
        let f = try maildrop()
        let cachePath = f.root + "/" + SizeCache.fileName
        /// What the memo holds for this maildrop's file as it is now on disk, and what a read
        /// of that file gives.
        func keptAndOnDisk() -> (kept: [ByteName: SizeCache.Entry]?, disk: [ByteName: SizeCache.Entry]?) {
            var root = Glibc.stat(), file = Glibc.stat()
            guard stat(f.root, &root) == 0, lstat(cachePath, &file) == 0 else { return (nil, nil) }
            let key = SizeCacheMemo.Key(rootDev: UInt64(root.st_dev), rootIno: UInt64(root.st_ino), addsMissingHeaderEnd: false)
            return (SizeCacheMemo.lookUp(key, identity: SizeCacheMemo.Identity(file))?.entries,
                    SizeCache.parse(readFile(cachePath))?.entries)
        }
        let first = try Maildrop.open(path: f.root)  // measures both, writes the cache
        #expect(first.statistics.messagesRead == 2 && first.statistics.cacheWritten)
        first.close()
        let written = keptAndOnDisk()
        #expect(written.kept != nil && written.kept == written.disk, "the memo holds the file as written")
        let second = try Maildrop.open(path: f.root)
        #expect(second.statistics.sizeCacheFromMemory, "the file this process just wrote is not read back")
        #expect(second.statistics.sizesFromCache == 2 && second.statistics.messagesRead == 0)
        #expect([second.size(0), second.size(1)] == [6, 6])
        second.close()
        // New mail: the login measures it and rewrites the cache (a new inode, three entries).
        try f.writer.deliver(Array("x\n".utf8), fileName: "1700000002.M0P1.host")
        let third = try Maildrop.open(path: f.root)
        #expect(third.statistics.messagesRead == 1 && third.statistics.cacheWritten)
        third.close()
        let rewritten = keptAndOnDisk()
        #expect(rewritten.kept?.count == 3 && rewritten.kept == rewritten.disk)
        let fourth = try Maildrop.open(path: f.root)
        #expect(fourth.statistics.sizeCacheFromMemory)
        #expect(fourth.statistics.sizesFromCache == 3 && fourth.statistics.messagesRead == 0)
        #expect([fourth.size(0), fourth.size(1), fourth.size(2)] == [6, 6, 3])
        fourth.close()
    }

    /// A cache file replaced (rename, as pop3d writes it) or rewritten in place is read again:
    /// its new entry is what the login uses.
    @Test func changedCacheFileIsReadAgain() throws {
        let f = try maildrop()
        for _ in 0..<3 { try Maildrop.open(path: f.root).close() }
        let cachePath = f.root + "/" + SizeCache.fileName
        let text = try #require(String(validating: readFile(cachePath), as: UTF8.self))
        // The first message's entry with another CRLF size (same file size and mtime: the
        // listing's check against the message passes, so the size shows which file was used).
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.hasSuffix(" 1700000000.M0P1.host") else { return String(line) }
            var fields = line.split(separator: " ").map(String.init)
            fields[2] = "7"
            return fields.joined(separator: " ")
        }
        let replaced = lines.joined(separator: "\n")
        #expect(replaced != text)
        writeFile(cachePath + ".new", Array(replaced.utf8))
        #expect(rename(cachePath + ".new", cachePath) == 0)
        let renamed = try Maildrop.open(path: f.root)
        #expect(renamed.statistics.sizeCacheFromMemory == false)
        #expect(renamed.size(0) == 7)
        renamed.close()
        #expect(try Maildrop.open(path: f.root).statistics.sizeCacheFromMemory)

        // In place (same inode), the original text back, with an mtime of its own.
        writeFile(cachePath, Array(text.utf8))
        var times = [timespec(tv_sec: 1_000, tv_nsec: 0), timespec(tv_sec: 1_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, cachePath, &times, 0) == 0)
        let inPlace = try Maildrop.open(path: f.root)
        #expect(inPlace.statistics.sizeCacheFromMemory == false)
        #expect(inPlace.size(0) == 6)
        inPlace.close()
    }

    @Test func removedCacheIsNotTakenFromMemory() throws {
        let f = try maildrop()
        for _ in 0..<3 { try Maildrop.open(path: f.root).close() }
        #expect(unlink(f.root + "/" + SizeCache.fileName) == 0)
        let md = try Maildrop.open(path: f.root)
        #expect(md.statistics.sizeCacheFromMemory == false)
        #expect(md.statistics.messagesRead == 2)
        md.close()
    }

    private func cache(_ entries: Int, tag: String) -> SizeCache {
        var c = SizeCache()
        for i in 0..<entries {
            c.entries[ByteName("\(tag).\(i)")] = SizeCache.Entry(fileSize: i, mtimeSec: 1, mtimeNsec: 0, crlfSize: i + 1)
        }
        return c
    }

    private func identity(_ n: Int) -> SizeCacheMemo.Identity {
        var st = Glibc.stat()
        st.st_dev = 1
        st.st_ino = UInt(n)
        st.st_size = 100
        return SizeCacheMemo.Identity(st)
    }

    private func key(_ n: Int) -> SizeCacheMemo.Key {
        SizeCacheMemo.Key(rootDev: 9, rootIno: UInt64(n), addsMissingHeaderEnd: false)
    }

    /// Tags of one width, so that every cache of `n` entries holds the same octets.
    private func tag(_ n: Int) -> String { n < 10 ? "m0\(n)" : "m\(n)" }

    @Test func tableKeepsTheNewestWithinItsBudget() {
        let unit = SizeCacheMemo.Table.cost(cache(10, tag: tag(0)))
        #expect(unit > 10 * 5)  // the names' octets and a row per entry
        var t = SizeCacheMemo.Table(budget: 10 * unit, maxCacheBytes: 4 * unit)
        for n in 0..<15 { t.remember(key(n), identity: identity(n), cache: cache(10, tag: tag(n))) }
        #expect(t.maildrops == 10 && t.bytes == 10 * unit)
        for n in 0..<5 { #expect(t.lookUp(key(n), identity: identity(n)) == nil, "\(n)") }
        for n in 5..<15 { #expect(t.lookUp(key(n), identity: identity(n))?.count == 10, "\(n)") }
        // Another file for the same maildrop, or the other wire-size rule: not this cache.
        #expect(t.lookUp(key(14), identity: identity(99)) == nil)
        #expect(t.lookUp(SizeCacheMemo.Key(rootDev: 9, rootIno: 14, addsMissingHeaderEnd: true), identity: identity(14)) == nil)
        // A cache above the per-maildrop cap is not kept, and takes the old one's place away.
        let dropped = t.remember(key(14), identity: identity(14), cache: cache(50, tag: "big"))
        #expect(dropped.count == 1 && dropped.first?.count == 10)
        #expect(t.lookUp(key(14), identity: identity(14)) == nil)
        #expect(t.maildrops == 9 && t.bytes == 9 * unit)
        // One that fits evicts the oldest until the budget holds, and hands them back.
        let big = cache(30, tag: "big")
        #expect(SizeCacheMemo.Table.cost(big) <= 4 * unit)
        let evicted = t.remember(key(20), identity: identity(20), cache: big)
        #expect(t.bytes <= 10 * unit && !evicted.isEmpty)
        #expect(t.lookUp(key(5), identity: identity(5)) == nil)
        #expect(t.lookUp(key(20), identity: identity(20))?.count == 30)
    }

    @Test func rememberingTheSameMaildropAgainKeepsTheOrderBounded() {
        let unit = SizeCacheMemo.Table.cost(cache(2, tag: "r"))
        var t = SizeCacheMemo.Table(budget: 1_000 * unit, maxCacheBytes: 1_000 * unit)
        for round in 0..<20_000 {
            t.remember(key(round % 3), identity: identity(round), cache: cache(2, tag: "r"))
        }
        #expect(t.maildrops == 3 && t.bytes == 3 * unit)
        #expect(t.positions <= 2 * 3 + 1024 + 1)
        #expect(t.lookUp(key(19_999 % 3), identity: identity(19_999))?.count == 2)
    }

    /// A cache file above the loop's read limit is not taken from memory on the loop: the
    /// login goes to the storage workers, as without the memo (`Maildrop.quickCacheBytes`).
    @Test func largeCacheIsNotTakenFromMemoryByAQuickOpen() throws {
        let f = try maildrop()
        for _ in 0..<2 { try Maildrop.open(path: f.root).close() }
        let cachePath = f.root + "/" + SizeCache.fileName
        // Padding entries for names that are not in the Maildir, past the quick limit.
        var text = String(decoding: readFile(cachePath), as: UTF8.self)
        var i = 0
        while text.utf8.count <= Maildrop.quickCacheBytes {
            text += "10 1700000000.0 12 1700009999.M\(i)P1.padding\n"
            i += 1
        }
        writeFile(cachePath + ".new", Array(text.utf8))
        #expect(rename(cachePath + ".new", cachePath) == 0)
        // The rewrite that would drop the padding fails (its temporary name is a directory),
        // as on a read-only Maildir: the large file stays.
        #expect(mkdir(f.root + "/" + SizeCache.tempName, 0o700) == 0)
        // A worker's open (not quick) reads it and remembers it...
        let full = try Maildrop.open(path: f.root)
        #expect(full.statistics.sizesFromCache == 2)
        #expect(full.statistics.cacheError != nil)
        full.close()
        var st = Glibc.stat()
        #expect(stat(cachePath, &st) == 0 && Int(st.st_size) > Maildrop.quickCacheBytes)
        // ...and a quick open still leaves it to the workers instead of using the memory.
        #expect(throws: MaildropError.wouldBlock) { try Maildrop.open(path: f.root, quick: true) }
    }
}

/// The whole file at `path` (empty if it cannot be opened).
private func readFile(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}
