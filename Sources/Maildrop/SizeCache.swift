import Glibc

/// The per-Maildir cache of computed CRLF sizes (`pop3d.sizes`), so that a
/// second login does not read every message again.
///
/// Text, one entry per line: `<fileSize> <mtimeSec>.<mtimeNsec> <crlfSize> <uniqueName>\n`
/// after the header line `pop3d-sizes <rule version>`. An entry is used only when both the
/// file size and the mtime still match the file: the cache is never trusted
/// over a changed file. A file that does not parse completely is ignored as a
/// whole (a torn write after a crash, another program's garbage). The file is
/// replaced atomically (write `pop3d.sizes.tmp`, then rename) while the
/// maildrop lock is held, so there is one writer at a time.
struct SizeCache {
    static let fileName = "pop3d.sizes"
    static let tempName = "pop3d.sizes.tmp"
    /// Carries the wire-size rule's version (`CRLFSizeCounter.ruleVersion`): sizes
    /// counted under another rule are not what RETR now sends, so such a file is ignored.
    static let header = "pop3d-sizes \(CRLFSizeCounter.ruleVersion)"
    /// A cache file larger than this is ignored rather than read: about
    /// 1,000,000 entries of typical length, far more than any sane Maildir.
    static let maxFileBytes = 64 << 20

    struct Entry: Equatable {
        var fileSize: Int
        var mtimeSec: Int
        var mtimeNsec: Int
        var crlfSize: Int
    }

    var entries: [String: Entry] = [:]

    /// Loads the cache in `rootfd`; a missing, oversized or corrupt file gives
    /// an empty cache. I/O errors also give an empty cache: sizes can always
    /// be recomputed, so a broken cache must never fail a login.
    static func load(rootfd: Int32) -> SizeCache {
        let fd = openat(rootfd, fileName, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return SizeCache() }
        defer { Sys.close(fd) }
        var st = Glibc.stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) <= maxFileBytes else {
            return SizeCache()
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.read(fd, base + filled, raw.count - filled)
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return SizeCache() }
            filled += n
        }
        return parse(bytes) ?? SizeCache()
    }

    /// Parses the whole file or nothing.
    static func parse(_ bytes: [UInt8]) -> SizeCache? {
        guard bytes.last == UInt8(ascii: "\n") else { return nil }
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        lines.removeLast()  // after the final "\n"
        guard let first = lines.first, Array(first) == Array(header.utf8) else { return nil }
        var cache = SizeCache()
        cache.entries.reserveCapacity(lines.count)
        for line in lines.dropFirst() {
            // Four space-separated fields; the name is last and may hold spaces.
            let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count == 4, !fields[3].isEmpty else { return nil }
            let mtime = fields[1].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            guard mtime.count == 2,
                  let fileSize = MaildirName.parseDecimal(fields[0]),
                  let sec = MaildirName.parseDecimal(mtime[0]),
                  let nsec = MaildirName.parseDecimal(mtime[1]),
                  let crlf = MaildirName.parseDecimal(fields[2]),
                  crlf >= fileSize
            else { return nil }
            let name = String(decoding: fields[3], as: UTF8.self)
            cache.entries[name] = Entry(fileSize: fileSize, mtimeSec: sec, mtimeNsec: nsec, crlfSize: crlf)
        }
        return cache
    }

    func serialize() -> [UInt8] {
        var out: [UInt8] = Array(SizeCache.header.utf8)
        out.append(UInt8(ascii: "\n"))
        out.reserveCapacity(entries.count * 64)
        // Sorted so the file is reproducible (and diffable when debugging).
        for (name, e) in entries.sorted(by: { $0.key < $1.key }) {
            out.append(contentsOf: "\(e.fileSize) \(e.mtimeSec).\(e.mtimeNsec) \(e.crlfSize) \(name)\n".utf8)
        }
        return out
    }

    /// Replaces the cache file atomically. Errors are returned for the
    /// statistics only: a cache that cannot be written costs time, not mail.
    func save(rootfd: Int32, rootPath: String) -> MaildropError? {
        do {
            let fd = try Sys.call("openat", rootPath + "/" + SizeCache.tempName) {
                openat(rootfd, SizeCache.tempName, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
            }
            do {
                try Sys.writeAll(fd, serialize(), path: rootPath + "/" + SizeCache.tempName)
            } catch {
                Sys.close(fd)
                _ = unlinkat(rootfd, SizeCache.tempName, 0)
                return error
            }
            Sys.close(fd)
            _ = try Sys.call("renameat", rootPath + "/" + SizeCache.fileName) {
                renameat(rootfd, SizeCache.tempName, rootfd, SizeCache.fileName)
            }
            return nil
        } catch {
            return error
        }
    }

    /// A name can be stored only if it survives the line format.
    static func storable(_ name: String) -> Bool {
        !name.isEmpty && !name.utf8.contains(UInt8(ascii: "\n"))
    }
}
