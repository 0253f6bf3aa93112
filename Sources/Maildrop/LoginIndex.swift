import CShim
import Glibc

/// The per-Maildir login index (`pop3d.index`, issue 14): what a login needs of every message
/// (file name, folder, CRLF size, file size and mtime as verified, unique name, UIDL, delivery
/// order), with the state of `new/` and `cur/` it was built from, so that a login whose two
/// folders have not changed reads one file instead of listing the folders and `stat`ing every
/// message.
///
/// Kept only for maildrops of more than `minimumMessages` messages: below that a listing costs
/// well under a millisecond and stays on the event loop (`Maildrop.quickEntryLimit`).
///
/// ## When it is trusted
///
/// A folder's part of the index is used without listing the folder only when the folder's
/// device, inode, modification time and change time (nanoseconds, `fstat`) are those recorded,
/// and the recorded change and modification times are strictly older than `clock`: a time of
/// the same filesystem clock taken *before* the folders were looked at (the change time of the
/// lock file after `futimens(UTIME_NOW)` on its access time). Creating, renaming or removing an
/// entry sets the folder's times to the filesystem's current time, which after `clock` is at
/// least `clock`, so it can no longer equal an older recorded time: a message delivered in the
/// same timestamp tick as the listing (or between the listing and the index write) makes the
/// recorded time equal to or later than `clock`, and the next login lists the folder again.
/// Comparing stamps of one filesystem clock (never this host's clock) keeps the rule valid on
/// filesystems with coarse timestamps (1 s, jiffies) and on NFS, whose server stamps the times.
/// A Maildir replaced by another (new inodes) or refilled in place (new change times, which no
/// program can set back) is listed from disk; so is one whose index was removed.
///
/// Not noticed at login: a message file rewritten in place under the same name (Maildir files
/// never change after delivery). RETR notices one whose size changed (`openFile` refuses a
/// longer one, the stream ends short on a shorter one; TOP when it reads that far) and removes
/// the index (`Maildrop.forgetLoginIndex`), so the next login checks every file's size again.
/// Not noticed at all: a same-size rewrite, and a clock stepped back so exactly that a later
/// change lands on the recorded nanosecond.
///
/// ## Format (version 1), little-endian
///
///     0   8  magic "pop3didx"
///     8   4  format version (1)          12  4  CRLF rule version (`CRLFSizeCounter.ruleVersion`)
///     16  8  checksum of the octets from 24 to the end (`checksum`)
///     24  8  length of the whole file
///     32  16 device, inode of the Maildir
///     48  16 clock: seconds, nanoseconds (seconds -1: unknown, nothing is trusted)
///     64  48 new/: device, inode, mtime s, ns, ctime s, ns
///     112 48 cur/: the same
///     160 8  message count, 0
///     168    the messages in delivery order, each 52 octets then its strings:
///            CRLF size 8, file size 8, mtime s 8, mtime ns 4, folder 1 (0 new, 1 cur),
///            flags 1 (1: the unique name is a prefix of the file name and not stored;
///            2: the UIDL is the unique name and not stored), file name length 2, unique
///            name length 2, UIDL length 2, delivery seconds 8, microseconds 8;
///            then the file name, the unique name, the UIDL (UTF-8, those stored)
///
/// A file that is not exactly this (wrong magic, version, rule version, checksum or length,
/// a size no file of its size can have, a name that is not a plain file name, a UIDL outside
/// RFC 1939 §7) is discarded as a whole and rewritten by the same login: never trusted, never
/// a failed login. It is written as `pop3d.index.tmp` and renamed into place under the
/// maildrop lock (one writer at a time); no fsync: a torn file after a crash fails its checksum.
struct LoginIndex {
    static let fileName = "pop3d.index"
    static let tempName = "pop3d.index.tmp"
    static let magic: [UInt8] = Array("pop3didx".utf8)
    static let formatVersion: UInt32 = 1

    /// The header's rule word: `CRLFSizeCounter.ruleVersion`, with the top bit set for the
    /// `oe-ns-eoh` workaround's sizes (`WireSizeRule`): an index written under one rule is
    /// never read under the other (its sizes would be 2 octets off for some messages).
    static func ruleStamp(_ rule: WireSizeRule) -> UInt32 {
        UInt32(CRLFSizeCounter.ruleVersion) | (rule.addsMissingHeaderEnd ? 0x8000_0000 : 0)
    }

    /// The size rule the entries' sizes follow (written into the header by `serialize`).
    var rule = WireSizeRule()
    /// Maildrops of at most this many messages keep no index (and one left from when they
    /// were larger is removed): their listing is cheap and runs on the event loop.
    static let minimumMessages = Maildrop.quickEntryLimit
    /// An index larger than this is not read (and is rewritten): about 1,000,000 messages
    /// with typical names, far beyond any sane Maildir. A maildrop whose index would be
    /// larger keeps none and is listed at every login.
    static let maxFileBytes = 128 << 20
    /// Longest file name stored (NAME_MAX on Linux).
    static let maxNameBytes = 255
    static let headerBytes = 168
    static let entryBytes = 52

    /// A moment of the filesystem's clock, or a file time: seconds and nanoseconds.
    struct Stamp: Equatable, Comparable {
        var sec: Int64
        var nsec: Int64
        init(_ ts: timespec) { sec = Int64(ts.tv_sec); nsec = Int64(ts.tv_nsec) }
        init(sec: Int64, nsec: Int64) { self.sec = sec; self.nsec = nsec }
        static func < (a: Stamp, b: Stamp) -> Bool { a.sec != b.sec ? a.sec < b.sec : a.nsec < b.nsec }
    }

    /// What `fstat` says of new/ or cur/.
    struct FolderState: Equatable {
        var dev: UInt64
        var ino: UInt64
        var mtime: Stamp
        var ctime: Stamp
        init(_ st: Glibc.stat) {
            dev = UInt64(st.st_dev); ino = UInt64(st.st_ino)
            mtime = Stamp(st.st_mtim); ctime = Stamp(st.st_ctim)
        }
        init(dev: UInt64, ino: UInt64, mtime: Stamp, ctime: Stamp) {
            self.dev = dev; self.ino = ino; self.mtime = mtime; self.ctime = ctime
        }
    }

    /// One message as listed, with what ordering and verification need.
    struct Entry {
        var info: MessageInfo
        var mtimeSec: Int
        var mtimeNsec: Int
        /// Delivery seconds (the name's, else the file's mtime) and microseconds.
        var seconds: UInt64
        var microseconds: UInt64
        /// Read from the index (not stored: true for every entry `parse` returns).
        var fromIndex = false
    }

    var rootDev: UInt64
    var rootIno: UInt64
    /// The filesystem clock before the folders were looked at; nil when it could not be read.
    var clock: Stamp?
    var new: FolderState
    var cur: FolderState
    /// In delivery order.
    var entries: [Entry]

    /// Whether `folder` may be taken from the index without listing it, its state being `now`.
    func trusts(_ folder: MessageInfo.Folder, now: FolderState) -> Bool {
        let recorded = folder == .new ? new : cur
        guard let clock, recorded == now else { return false }
        return recorded.ctime < clock && recorded.mtime < clock
    }

    /// The entry of `uniqueName`, through `byUnique` (built on first use: most logins that
    /// list a folder find only known names and new mail, no renamed file).
    func entry(uniqueName: String, byUnique: inout [String: Int]?) -> Entry? {
        if byUnique == nil {
            var map: [String: Int] = [:]
            map.reserveCapacity(entries.count)
            for (i, e) in entries.enumerated() { map[e.info.uniqueName] = i }
            byUnique = map
        }
        guard let i = byUnique?[uniqueName], entries.indices.contains(i) else { return nil }
        return entries[i]
    }

    // MARK: reading

    enum Loaded {
        case absent
        case valid(LoginIndex)
        /// There, but not usable (why): rewritten by the same login.
        case unusable(String)
    }

    /// Whether an index file is present (the `quick` open leaves such maildrops to the workers).
    static func present(rootfd: Int32) -> Bool {
        var st = Glibc.stat()
        return fstatat(rootfd, fileName, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// Reads and checks the index in `rootfd` (opened `O_NONBLOCK|O_NOFOLLOW`, regular files
    /// only). I/O errors are `.unusable`: an index can always be rebuilt.
    static func load(rootfd: Int32, rule: WireSizeRule = WireSizeRule()) -> Loaded {
        let bytes: [UInt8]
        do throws(MaildropError) {
            switch try StateFile.read(rootfd: rootfd, name: fileName, maxBytes: maxFileBytes, quick: false) {
            case .absent: return .absent
            case .unusable(let why), .shorter(let why): return .unusable(why)
            case .bytes(let read, _): bytes = read
            }
        } catch {
            return .unusable("\(error)")
        }
        switch parse(bytes, rule: rule) {
        case .success(let index): return .valid(index)
        case .failure(let why): return .unusable(why.text)
        }
    }

    struct ParseError: Error { let text: String }

    /// Parses a whole index or nothing.
    static func parse(_ bytes: [UInt8], rule: WireSizeRule = WireSizeRule()) -> Result<LoginIndex, ParseError> {
        bytes.withUnsafeBytes { raw -> Result<LoginIndex, ParseError> in
            func fail(_ why: String) -> Result<LoginIndex, ParseError> { .failure(ParseError(text: why)) }
            guard raw.count >= headerBytes else { return fail("shorter than its header") }
            guard raw.prefix(8).elementsEqual(magic) else { return fail("not a pop3d login index") }
            func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
            func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
            func u16(_ at: Int) -> Int { Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self))) }
            func i64(_ at: Int) -> Int64 { Int64(bitPattern: u64(at)) }
            guard u32(8) == formatVersion else { return fail("format version \(u32(8)), not \(formatVersion)") }
            guard u32(12) == ruleStamp(rule) else { return fail("sizes of another size rule") }
            guard u64(24) == UInt64(raw.count) else { return fail("length \(u64(24)) recorded, \(raw.count) found") }
            guard checksum(UnsafeRawBufferPointer(rebasing: raw[24...])) == u64(16) else { return fail("checksum mismatch") }
            func folder(_ at: Int) -> FolderState {
                FolderState(dev: u64(at), ino: u64(at + 8), mtime: Stamp(sec: i64(at + 16), nsec: i64(at + 24)),
                            ctime: Stamp(sec: i64(at + 32), nsec: i64(at + 40)))
            }
            let clockSec = i64(48)
            let count = Int(u64(160) & 0xFFFF_FFFF)
            guard u64(160) >> 32 == 0, count <= (raw.count - headerBytes) / entryBytes else {
                return fail("message count beyond the file")
            }
            var index = LoginIndex(
                rootDev: u64(32), rootIno: u64(40),
                clock: clockSec < 0 ? nil : Stamp(sec: clockSec, nsec: i64(56)),
                new: folder(64), cur: folder(112), entries: [])
            index.entries.reserveCapacity(count)
            var at = headerBytes
            for _ in 0..<count {
                guard at + entryBytes <= raw.count else { return fail("truncated entry") }
                let crlf = Int(truncatingIfNeeded: u64(at))
                let fileSize = Int(truncatingIfNeeded: u64(at + 8))
                let mtimeSec = Int(truncatingIfNeeded: u64(at + 16))
                let mtimeNsec = Int(u32(at + 24))
                let folderByte = raw[at + 28]
                let flags = raw[at + 29]
                let nameLen = u16(at + 30), uniqueLen = u16(at + 32), uidLen = u16(at + 34)
                let seconds = u64(at + 36), micro = u64(at + 44)
                at += entryBytes
                guard folderByte <= 1, flags & ~3 == 0, fileSize >= 0,
                      crlf >= fileSize, crlf <= Maildrop.maxCRLFSize(fileSize: fileSize) else {
                    return fail("an entry with impossible values")
                }
                let uniqueStored = flags & 1 == 0 ? uniqueLen : 0
                let uidStored = flags & 2 == 0 ? uidLen : 0
                guard nameLen > 0, nameLen <= maxNameBytes, uniqueLen <= nameLen || flags & 1 == 0,
                      at + nameLen + uniqueStored + uidStored <= raw.count else {
                    return fail("an entry with impossible lengths")
                }
                let nameBytes = UnsafeRawBufferPointer(rebasing: raw[at..<(at + nameLen)])
                // A plain file name of new/ or cur/: never a path, never a dot-file, never NUL.
                guard nameBytes[0] != UInt8(ascii: "."), !nameBytes.contains(UInt8(ascii: "/")), !nameBytes.contains(0),
                      let name = makeString(nameBytes) else {
                    return fail("an entry whose name is not a file name")
                }
                at += nameLen
                let unique: String
                if flags & 1 != 0 {
                    guard uniqueLen <= nameLen, let u = makeString(UnsafeRawBufferPointer(rebasing: nameBytes[0..<uniqueLen])) else {
                        return fail("an entry whose unique name is not a prefix")
                    }
                    unique = uniqueLen == nameLen ? name : u
                } else {
                    guard let u = makeString(UnsafeRawBufferPointer(rebasing: raw[at..<(at + uniqueLen)])) else {
                        return fail("an entry whose unique name is not UTF-8")
                    }
                    unique = u
                    at += uniqueLen
                }
                let uid: String
                if flags & 2 != 0 {
                    uid = unique
                    // RFC 1939 §7: 1 to 70 octets; a unique name of length 0 (flag 1) is no UIDL.
                    guard uniqueLen >= 1, uniqueLen <= MaildirName.maxVerbatimUIDLength else {
                        return fail("an entry with an empty or overlong UIDL")
                    }
                    for b in unique.utf8 where b < 0x21 || b > 0x7E { return fail("an entry with a UIDL outside 0x21-0x7E") }
                } else {
                    let uidBytes = UnsafeRawBufferPointer(rebasing: raw[at..<(at + uidLen)])
                    guard uidLen > 0, uidLen <= MaildirName.maxVerbatimUIDLength,
                          uidBytes.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) else {
                        return fail("an entry with a UIDL outside RFC 1939 section 7")
                    }
                    uid = makeString(uidBytes) ?? ""  // checked printable ASCII above
                    at += uidLen
                }
                let info = MessageInfo(folder: folderByte == 0 ? .new : .cur, fileName: name, uniqueName: unique,
                                       uid: uid, size: crlf, fileSize: fileSize)
                index.entries.append(Entry(info: info, mtimeSec: mtimeSec, mtimeNsec: mtimeNsec,
                                           seconds: seconds, microseconds: micro, fromIndex: true))
            }
            guard at == raw.count else { return fail("octets after the last entry") }
            return .success(index)
        }
    }

    /// The string of `bytes` if they are UTF-8. ASCII (every Maildir name in practice) is
    /// copied without `String(validating:as:)`, whose generic path looked up type metadata
    /// once per call: 14 % of a warm 100,000-message login.
    static func makeString(_ bytes: UnsafeRawBufferPointer) -> String? {
        var ascii = true
        for b in bytes where b >= 0x80 {
            ascii = false
            break
        }
        guard ascii else { return String(validating: bytes, as: UTF8.self) }
        return String(unsafeUninitializedCapacity: bytes.count) { out in
            guard let dst = out.baseAddress, let src = bytes.baseAddress else { return 0 }
            dst.update(from: src.assumingMemoryBound(to: UInt8.self), count: bytes.count)
            return bytes.count
        }
    }

    // MARK: writing

    /// The file's octets, or nil when an entry cannot be stored (a name longer than
    /// `maxNameBytes`) or the whole would exceed `maxFileBytes`.
    func serialize() -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(LoginIndex.headerBytes + entries.count * (LoginIndex.entryBytes + 48))
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out.append(contentsOf: LoginIndex.magic)
        put(LoginIndex.formatVersion)
        put(LoginIndex.ruleStamp(rule))
        put(UInt64(0))  // checksum, filled in below
        put(UInt64(0))  // length, filled in below
        put(rootDev); put(rootIno)
        put(clock?.sec ?? -1); put(clock?.nsec ?? 0)
        for f in [new, cur] {
            put(f.dev); put(f.ino); put(f.mtime.sec); put(f.mtime.nsec); put(f.ctime.sec); put(f.ctime.nsec)
        }
        put(UInt64(entries.count))
        for e in entries {
            let name = e.info.fileName.utf8, unique = e.info.uniqueName.utf8, uid = e.info.uid.utf8
            guard name.count <= LoginIndex.maxNameBytes, unique.count <= UInt16.max, uid.count <= UInt16.max,
                  !name.isEmpty, !uid.isEmpty, e.info.fileSize >= 0, e.info.size >= 0 else { return nil }
            let prefix = unique.count <= name.count && LoginIndex.hasPrefix(e.info.fileName, e.info.uniqueName)
            let uidIsUnique = e.info.uid == e.info.uniqueName
            put(UInt64(e.info.size)); put(UInt64(e.info.fileSize)); put(Int64(e.mtimeSec))
            put(UInt32(truncatingIfNeeded: e.mtimeNsec))
            out.append(e.info.folder == .new ? 0 : 1)
            out.append((prefix ? 1 : 0) | (uidIsUnique ? 2 : 0))
            put(UInt16(name.count)); put(UInt16(unique.count)); put(UInt16(uid.count))
            put(e.seconds); put(e.microseconds)
            out.append(contentsOf: name)
            if !prefix { out.append(contentsOf: unique) }
            if !uidIsUnique { out.append(contentsOf: uid) }
            if out.count > LoginIndex.maxFileBytes { return nil }
        }
        let length = UInt64(out.count)
        withUnsafeBytes(of: length.littleEndian) { out.replaceSubrange(24..<32, with: $0) }
        let sum = out.withUnsafeBytes { LoginIndex.checksum(UnsafeRawBufferPointer(rebasing: $0[24...])) }
        withUnsafeBytes(of: sum.littleEndian) { out.replaceSubrange(16..<24, with: $0) }
        return out
    }

    /// Whether `name`'s UTF-8 starts with `prefix`'s (a memcmp, not the generic `starts(with:)`).
    static func hasPrefix(_ name: String, _ prefix: String) -> Bool {
        var name = name, prefix = prefix
        return name.withUTF8 { n in
            prefix.withUTF8 { p in
                guard p.count <= n.count, let nb = n.baseAddress, let pb = p.baseAddress else { return p.isEmpty }
                return memcmp(nb, pb, p.count) == 0
            }
        }
    }

    /// Replaces the index atomically (temporary file created `O_EXCL|O_NOFOLLOW|O_NONBLOCK`
    /// after removing whatever had its name, then renamed), as `SizeCache.save`. Errors are
    /// returned for the statistics: an index that cannot be written costs time, not mail.
    func save(rootfd: Int32, rootPath: String) -> MaildropError? {
        guard let bytes = serialize() else {
            LoginIndex.remove(rootfd: rootfd)
            return .temporary("\(rootPath)/\(LoginIndex.fileName): not kept (above \(LoginIndex.maxFileBytes) octets, or a name longer than \(LoginIndex.maxNameBytes))")
        }
        let tempPath = rootPath + "/" + LoginIndex.tempName
        do throws(MaildropError) {
            _ = try Sys.call("unlinkat", tempPath, unless: ENOENT) { unlinkat(rootfd, LoginIndex.tempName, 0) }
            guard let fd = try Sys.createExclusive(rootfd, LoginIndex.tempName, flags: O_WRONLY, mode: 0o600, path: tempPath) else {
                throw MaildropError.temporary("openat(\(tempPath)): created by another program meanwhile")
            }
            do {
                try Sys.writeAll(fd, bytes, path: tempPath)
            } catch {
                Sys.close(fd)
                _ = unlinkat(rootfd, LoginIndex.tempName, 0)
                return error
            }
            Sys.close(fd)
            _ = try Sys.call("renameat", rootPath + "/" + LoginIndex.fileName) {
                renameat(rootfd, LoginIndex.tempName, rootfd, LoginIndex.fileName)
            }
            return nil
        } catch {
            return error
        }
    }

    /// Removes the index (a maildrop that shrank to `minimumMessages` or fewer, or one whose
    /// index cannot be written): a stale index must not outlive the maildrop it described.
    static func remove(rootfd: Int32) {
        _ = unlinkat(rootfd, fileName, 0)
    }

    /// The filesystem's clock now, read where the Maildir lives: the change time that
    /// `futimens` (access time `UTIME_NOW`, modification time `UTIME_OMIT`) gives the lock
    /// file. The lock file's modification time is LOGIN-DELAY's record and stays untouched.
    /// nil when the file system refuses (read-only): then no folder is ever trusted.
    static func fileSystemClock(lockfd: Int32) -> Stamp? {
        var times = [timespec(tv_sec: 0, tv_nsec: utimeNow), timespec(tv_sec: 0, tv_nsec: utimeOmit)]
        guard futimens(lockfd, &times) == 0 else { return nil }
        var st = Glibc.stat()
        guard fstat(lockfd, &st) == 0 else { return nil }
        return Stamp(st.st_ctim)
    }

    /// `UTIME_NOW` and `UTIME_OMIT` of <sys/stat.h>, which Swift does not import (CShim).
    private static let utimeNow = Int(CSHIM_UTIME_NOW)
    private static let utimeOmit = Int(CSHIM_UTIME_OMIT)

    /// A 64-bit multiply-xorshift over 8-octet words (the tail octet by octet). It detects torn,
    /// truncated and foreign files; it is no signature: whoever can write the Maildir can write
    /// a matching index, and every value read is bounds-checked as if it were hostile.
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0x243F_6A88_85A3_08D3 ^ UInt64(bytes.count)
        let words = bytes.count / 8
        for i in 0..<words {
            let w = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
            h = (h ^ w) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
        }
        for i in (words * 8)..<bytes.count {
            h = (h ^ UInt64(bytes[i])) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
        }
        return h
    }
}
