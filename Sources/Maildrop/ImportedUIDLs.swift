/// pop3d's own UIDL state, `pop3d.uidls` in the Maildir root: the UIDL each message must keep
/// whatever `uidl_format` says, written by `pop3d uidl import` (the UIDLs the old server
/// served) and applied by every login before any format (`Maildrop.assignUIDLs`). A host that
/// left Dovecot or Courier for good imports once and sets `uidl_format` back to `maildir`:
/// old mail keeps its old UIDLs, new mail gets pop3d's own.
///
/// Text, LF line ends:
///
///     pop3d-uidls 1
///     <UIDL> <unique name>
///
/// one line per message, sorted by unique name. The UIDL comes first: it has no spaces (RFC
/// 1939 §7: 1 to 70 octets in 0x21–0x7E, checked on reading and writing); the unique name
/// (the Maildir base name without `:2,` flags and `,S=`/`,W=` fields, `MaildirName`) is the
/// rest of the line. No UIDL appears twice.
///
/// Entries of messages that are gone are dropped when the file is next written (by an import,
/// or by a login that confirmed with a second listing that they are gone); an entry never
/// moves to another message, so a UIDL is never reused (RFC 1939 §7). The file is replaced
/// atomically (`pop3d.uidls.tmp`, fsync, rename) under the maildrop lock. A file that does not
/// parse is never rewritten: it holds UIDLs no listing can give back.
public struct ImportedUIDLs: Equatable, Sendable {
    /// The file's name in the Maildir root.
    public static let fileName = "pop3d.uidls"
    static let header = "pop3d-uidls 1"
    /// Largest file read (about 700,000 entries of typical length); larger is refused unread.
    /// A `quick` open reads at most `Maildrop.quickCacheBytes` and leaves more to a worker.
    public static let maxFileBytes = 64 << 20
    /// Longest entry line: a 70-octet UIDL, a space and a name of at most 255 octets
    /// (NAME_MAX) fit in far less; a longer line is garbage.
    static let maxLineBytes = 1024

    /// Unique name → UIDL.
    public var uidls: [String: String]

    /// A state of these entries (unique name → UIDL); not checked against RFC 1939 §7 here.
    public init(uidls: [String: String] = [:]) {
        self.uidls = uidls
    }

    /// Parses the whole file or says why not.
    static func parse(_ bytes: [UInt8]) -> Result<ImportedUIDLs, UIDLStateError> {
        func bad(_ line: Int, _ why: String) -> Result<ImportedUIDLs, UIDLStateError> {
            .failure(UIDLStateError("\(fileName) line \(line): \(why)"))
        }
        guard bytes.last == UInt8(ascii: "\n") else {
            return .failure(UIDLStateError(bytes.isEmpty ? "\(fileName) is empty" : "\(fileName) is truncated (its last line has no LF)"))
        }
        var result = ImportedUIDLs()
        var seen = Set<String>()
        result.uidls.reserveCapacity(bytes.count / 48)
        seen.reserveCapacity(bytes.count / 48)
        var start = 0
        var lineNumber = 0
        while start < bytes.count {
            guard let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { break }
            lineNumber += 1
            let line = bytes[start..<end]
            start = end + 1
            guard line.count <= maxLineBytes else { return bad(lineNumber, "longer than \(maxLineBytes) octets") }
            if lineNumber == 1 {
                guard line.elementsEqual(header.utf8) else { return bad(1, "not the header \"\(header)\"") }
                continue
            }
            guard let space = line.firstIndex(of: UInt8(ascii: " ")) else { return bad(lineNumber, "not \"<UIDL> <name>\"") }
            let uidl = line[line.startIndex..<space]
            let name = line[(space + 1)...]
            guard UIDLRules.isValid(uidl) else { return bad(lineNumber, "the UIDL breaks RFC 1939 §7 (1-70 octets in 0x21-0x7E)") }
            guard !name.isEmpty, !name.contains(0), let nameText = String(validating: name, as: UTF8.self) else {
                return bad(lineNumber, "the name is empty or not UTF-8")
            }
            let uidlText = String(decoding: uidl, as: UTF8.self)
            guard result.uidls[nameText] == nil else { return bad(lineNumber, "a second entry for \(nameText)") }
            guard seen.insert(uidlText).inserted else { return bad(lineNumber, "UIDL \(uidlText) given twice") }
            result.uidls[nameText] = uidlText
        }
        guard lineNumber >= 1 else { return .failure(UIDLStateError("\(fileName) has no header")) }
        return .success(result)
    }

    func serialize() -> [UInt8] {
        var out = Array(ImportedUIDLs.header.utf8)
        out.append(UInt8(ascii: "\n"))
        out.reserveCapacity(uidls.count * 64)
        for (name, uidl) in uidls.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
            out.append(contentsOf: uidl.utf8)
            out.append(UInt8(ascii: " "))
            out.append(contentsOf: name.utf8)
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Whether an entry can be written: a valid UIDL and a name that survives the line format.
    static func storable(name: String, uidl: String) -> Bool {
        UIDLRules.isValid(uidl.utf8) && !name.isEmpty && !name.utf8.contains(UInt8(ascii: "\n")) && !name.utf8.contains(0)
    }

    /// Reads and parses `pop3d.uidls` in `rootfd` (`quick`: at most `Maildrop.quickCacheBytes`).
    static func load(rootfd: Int32, quick: Bool) throws(MaildropError) -> StateFile.Loaded<ImportedUIDLs> {
        try StateFile.load(rootfd: rootfd, name: fileName, maxBytes: maxFileBytes, quick: quick, parse: parse)
    }
}

extension Maildrop {
    /// Gives every message with an entry in `pop3d.uidls` its imported UIDL (over whatever
    /// the format gave it) and counts them in `statistics.importedUIDLs`. Returns whether any
    /// UIDL was set. A file that cannot be used is left alone and the format's UIDLs stay
    /// (`statistics.importedUIDLsIgnored`, logged). Entries of messages not listed are dropped
    /// and the file rewritten only by a worker open (`quick` false) and only for those a
    /// second listing (`locate`) confirms gone: a message that a concurrent rename hid from
    /// one readdir must not lose its UIDL for good.
    func applyImportedUIDLs(rootfd: Int32, quick: Bool) throws(MaildropError) -> Bool {
        let state: ImportedUIDLs
        switch try ImportedUIDLs.load(rootfd: rootfd, quick: quick) {
        case .absent: return false
        case .unusable(let why):
            statistics.importedUIDLsIgnored = why
            return false
        case .valid(let s): state = s
        }
        var applied = 0
        var listed = Set<String>()
        listed.reserveCapacity(messages.count)
        for i in messages.indices {
            let name = messages[i].uniqueName
            listed.insert(name)
            if let uidl = state.uidls[name] {
                messages[i].uid = uidl
                applied += 1
            }
        }
        statistics.importedUIDLs = applied
        if !quick && applied < state.uidls.count {
            let stale = Set(state.uidls.keys.filter { !listed.contains($0) })
            // Part of the open, not a listing "after login" (`directoryScans` counts those).
            let scans = directoryScans
            let stillThere = try locate(uniqueNames: stale)
            directoryScans = scans
            var pruned = state
            for name in stale where stillThere[name] == nil { pruned.uidls[name] = nil }
            if pruned.uidls.count != state.uidls.count {
                do throws(MaildropError) {
                    try StateFile.replace(rootfd: rootfd, rootPath: path, name: ImportedUIDLs.fileName, bytes: pruned.serialize())
                    statistics.importedUIDLsPruned = state.uidls.count - pruned.uidls.count
                } catch {
                    statistics.importedUIDLsWriteError = error
                }
            }
        }
        return applied > 0
    }
}
