import ByteCodec
import Glibc

/// The per-Maildir cache of computed CRLF sizes (`pop3d.sizes`), so that a
/// second login does not read every message again.
///
/// Text, one entry per line: `<fileSize> <mtimeSec>.<mtimeNsec> <crlfSize> <uniqueName>\n`
/// after the header line `pop3d-sizes <rule version>` (followed by ` oe-ns-eoh` for sizes counted
/// under that workaround, `header(for:)`). An entry is used only when both the
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
    /// The header of a cache of sizes under `rule`: the plain one, or with ` oe-ns-eoh` after
    /// the version (`WireSizeRule`), so that sizes of one variant are never read as the other's.
    static func header(for rule: WireSizeRule) -> String {
        rule.addsMissingHeaderEnd ? header + " oe-ns-eoh" : header
    }
    /// A cache file larger than this is ignored rather than read: about
    /// 1,000,000 entries of typical length, far more than any sane Maildir.
    static let maxFileBytes = 64 << 20

    struct Entry: Equatable {
        var fileSize: Int
        var mtimeSec: Int
        var mtimeNsec: Int
        var crlfSize: Int
    }

    /// The entries as a listing searches them (issue 17): names in octet order in one buffer,
    /// found by binary search, no `String` or hash per entry (`Table`). What `SizeCacheMemo`
    /// keeps, so a login served from memory searches it too.
    private(set) var table = Table(rule: WireSizeRule())

    /// By unique name, as octets (`ByteName`): built from `table` when asked (tests, fuzzing);
    /// setting it rebuilds the table. The listing never goes through it.
    var entries: [ByteName: Entry] {
        get { table.dictionary }
        set { table = Table(entries: newValue, rule: rule) }
    }
    /// Entries held (`entries.count` without building the dictionary).
    var count: Int { table.rows.count }
    /// Octets this cache holds in memory: its names' octets and one row per entry
    /// (`SizeCacheMemo`'s budget).
    var memoryBytes: Int { table.storage.count + table.rows.count * MemoryLayout<Table.Row>.stride }
    /// The variant of the wire-size rule the sizes were counted under.
    var rule: WireSizeRule {
        get { table.rule }
        set { table.rule = newValue }
    }

    /// What `load` found.
    enum Loaded {
        /// No cache file: nothing to rewrite unless sizes were measured.
        case absent
        case valid(SizeCache)
        /// A file is there but cannot be used (torn, garbage, absurd sizes, oversized, not a
        /// regular file, unreadable): the listing rewrites it, so the cost of looking at it
        /// is paid once, not at every login.
        case unusable(String)
    }

    /// Loads the cache in `rootfd`, opened `O_NONBLOCK|O_NOFOLLOW` (a FIFO or a symbolic
    /// link named `pop3d.sizes` is never waited on nor followed). A cache larger than
    /// `maxBytes` is not read: with `quick` that is `.wouldBlock` (the storage workers will
    /// read it), otherwise it is `.unusable`. I/O errors give `.unusable` too: sizes can
    /// always be recomputed, so a broken cache must never fail a login.
    static func load(rootfd: Int32, maxBytes: Int, quick: Bool, rule: WireSizeRule = WireSizeRule()) throws(MaildropError) -> Loaded {
        try loadFile(rootfd: rootfd, maxBytes: maxBytes, quick: quick, rule: rule).loaded
    }

    /// `load`, with the `stat` of the file a `.valid` cache was parsed from (`SizeCacheMemo`).
    static func loadFile(rootfd: Int32, maxBytes: Int, quick: Bool, rule: WireSizeRule) throws(MaildropError)
        -> (loaded: Loaded, file: Glibc.stat?)
    {
        let bytes: [UInt8]
        let file: Glibc.stat
        switch try StateFile.read(rootfd: rootfd, name: fileName, maxBytes: maxBytes, quick: quick) {
        case .absent: return (.absent, nil)
        case .unusable(let why), .shorter(let why): return (.unusable(why), nil)
        case .bytes(let read, let st): (bytes, file) = (read, st)
        }
        guard let cache = parse(bytes, rule: rule) else {
            let other = header(for: WireSizeRule(addsMissingHeaderEnd: !rule.addsMissingHeaderEnd))
            if bytes.starts(with: Array((other + "\n").utf8)) {
                return (.unusable("written under another pop3_client_workarounds (oe-ns-eoh) setting"), nil)
            }
            return (.unusable("it does not parse"), nil)
        }
        return (.valid(cache), file)
    }

    /// Parses the whole file or nothing (`Table.parse`: one pass over the octets in place;
    /// issue 17: the `split` into arrays of lines and fields this replaced ran at every login of
    /// a maildrop whose names carry no `W=`), keyed by the names' octets (`ByteName`). A name
    /// that appears twice keeps its last line's entry.
    static func parse(_ bytes: [UInt8], rule: WireSizeRule = WireSizeRule()) -> SizeCache? {
        Table.parse(bytes, rule: rule).map { SizeCache(table: $0) }
    }

    init(table: Table) { self.table = table }

    /// No entries, sizes under `rule`.
    init(rule: WireSizeRule = WireSizeRule()) { table = Table(rule: rule) }

    func serialize() -> [UInt8] {
        var out: [UInt8] = Array(SizeCache.header(for: rule).utf8)
        out.append(UInt8(ascii: "\n"))
        out.reserveCapacity(count * 64)
        // Sorted so the file is reproducible (and diffable when debugging): the table's order,
        // octet order of the names.
        for row in table.rows.indices {
            let e = table.rows[row].entry
            // The project's digit writer (`ByteCodec`), not a `String` interpolated per row.
            out.appendDecimal(e.fileSize)
            out.append(UInt8(ascii: " "))
            out.appendDecimal(e.mtimeSec)
            out.append(UInt8(ascii: "."))
            out.appendDecimal(e.mtimeNsec)
            out.append(UInt8(ascii: " "))
            out.appendDecimal(e.crlfSize)
            out.append(UInt8(ascii: " "))
            out.append(contentsOf: table.nameOctets(row))
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Replaces the cache file atomically by `bytes` (a `serialize`d cache; the listing
    /// writes through `saveRemembered`). Errors are returned for the statistics and the log:
    /// a cache that cannot be written costs time, not mail. The temporary file is removed
    /// first and created with `O_EXCL|O_NOFOLLOW|O_NONBLOCK`: whatever another program left
    /// under its name (a FIFO would block a plain open for writing, a link would lead the
    /// write elsewhere) is never opened. After a successful rename, `file` is the `fstat` of
    /// the descriptor written, taken after the rename (which changes the inode's ctime) and
    /// before its close: what a `stat` of `pop3d.sizes` gives until something else changes
    /// it (`SizeCacheMemo.Identity`); nil when that `fstat` fails.
    static func write(_ bytes: [UInt8], rootfd: Int32, rootPath: String) -> (error: MaildropError?, file: Glibc.stat?) {
        let tempPath = rootPath + "/" + SizeCache.tempName
        do throws(MaildropError) {
            _ = try Sys.call("unlinkat", tempPath, unless: ENOENT) { unlinkat(rootfd, SizeCache.tempName, 0) }
            let fd: Int32
            switch try Sys.openRegularFile(
                rootfd, SizeCache.tempName, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600, path: tempPath) {
            case .ok(let f): fd = f
            case .missing: throw MaildropError.temporary("openat(\(tempPath)): vanished while being created")
            case .wrongKind(let mode): throw Maildrop.refused(tempPath, mode, root: false)
            }
            defer { Sys.close(fd) }
            do {
                try Sys.writeAll(fd, bytes, path: tempPath)
            } catch {
                _ = unlinkat(rootfd, SizeCache.tempName, 0)
                return (error, nil)
            }
            _ = try Sys.call("renameat", rootPath + "/" + SizeCache.fileName) {
                renameat(rootfd, SizeCache.tempName, rootfd, SizeCache.fileName)
            }
            var st = Glibc.stat()
            return (nil, fstat(fd, &st) == 0 ? st : nil)
        } catch {
            return (error, nil)
        }
    }

    /// Whether `pop3d.sizes` in `rootfd` may hold entries, by one `fstatat` (no open, no
    /// read): false when there is none, or when it is a regular file of exactly the header
    /// line under `rule` (the empty cache a listing of names that all carry `W=` writes).
    /// Anything else (entries, garbage, a FIFO, a link, another rule's header) is true: the
    /// listing then reads it, and drops or replaces it as it would have before issue 17.
    static func mayHoldEntries(rootfd: Int32, rule: WireSizeRule) -> Bool {
        var st = Glibc.stat()
        guard fstatat(rootfd, fileName, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return errno != ENOENT }
        return (st.st_mode & S_IFMT) != S_IFREG || Int(st.st_size) != header(for: rule).utf8.count + 1
    }

    /// A name can be stored only if it survives the line format.
    static func storable(_ name: String) -> Bool {
        !name.isEmpty && !name.utf8.contains(UInt8(ascii: "\n"))
    }
}
