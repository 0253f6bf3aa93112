/// Courier pop3d's own UIDL state, the file `courierpop3dsizelist` in the Maildir (read from
/// Courier's `imap/pop3dserver.c`, courier-imap 4.x–5.x, and checked against Debian's
/// `courier-pop` 1.0.16; our own code, read only: pop3d never writes Courier's file).
///
/// Shape (one record per line, each line ending in LF):
///
///     /<version> <next UID>[ <UIDVALIDITY>]
///     <file name> <size> <UID>:<UIDVALIDITY>[:<utf8>]
///
/// - `version` is 3 (Courier since its UTF-8 support: `<UID>:<UIDVALIDITY>:<0|1>`) or 2 (the
///   same without the UTF-8 flag). Courier itself reads only these two and starts the file anew
///   (every UIDL new) on any other, so pop3d refuses any other too.
/// - `file name` is the file's name in cur/ (Courier moves new/ to cur/ at login), flags
///   included; it may hold spaces, so the two numeric fields are taken from the line's end.
///   Courier matches a record to a file by the name up to the info separator `:`; pop3d by
///   the same unique name it uses everywhere (`MaildirName.uniqueName`).
/// - `size` is Courier's octet count. pop3d serves its own (the one RETR sends): for messages
///   with LF line ends they are equal.
///
/// The UIDL Courier serves for a record (`print_uidl`): `UID<n>-<UIDVALIDITY>`, or `UID<n>`
/// when the record's UIDVALIDITY is 0, or, for UID 0, the file name up to `:` with every octet
/// outside 0x21–0x7E and `'`, `"`, `+` written `+XX` (upper-case hex).
///
/// Messages that are not in the file: Courier would give them `UID<next>-<header UIDVALIDITY>`
/// and rewrite the file. pop3d, the server replacing Courier, does not write another server's
/// state: they keep the UIDL pop3d's `maildir` format gives (see `Maildrop.assignUIDLs`).
///
/// pop3d parses the whole file or nothing: a wrong version, a line that is not a record, a
/// last line without its LF (a torn copy), two records for one message or one UIDL given
/// twice make the file `unusable` with the reason, and the session serves `maildir` UIDLs
/// (`OpenStatistics.uidlFallback`). Courier writes the file through a temporary file and a
/// rename, so a file that does not parse was damaged by something else, and guessing which
/// records to trust could give a message another message's UIDL (RFC 1939 §7: never reused).
struct CourierSizeList: Equatable {
    static let fileName = "courierpop3dsizelist"
    /// Largest file read at all (a worker reads it; a `quick` open reads at most
    /// `Maildrop.quickCacheBytes`): about 700,000 records of typical length, far more than
    /// any Maildir Courier served. Larger is garbage, refused without reading it.
    static let maxFileBytes = 64 << 20
    /// Longest record line: a file name is at most 255 octets (NAME_MAX), the numbers at most
    /// 20 digits each; a longer line is garbage. (Courier cuts its lines at about 2,000.)
    static let maxLineBytes = 1024
    /// The versions Courier reads (`LISTVERSION` and `LISTVERSION - 1`).
    static let versions: ClosedRange<Int> = 2...3

    var version: Int
    /// The header's next UID: what Courier would give the next new message.
    var nextUID: UInt64
    /// The header's UIDVALIDITY (absent in a two-field header: Courier then takes the time).
    var uidValidity: UInt64?
    /// Unique name → the UIDL Courier serves for it.
    var uidls: [String: String]

    /// Parses the whole file or says why not (the reason names the line).
    static func parse(_ bytes: [UInt8]) -> Result<CourierSizeList, UIDLStateError> {
        func bad(_ line: Int, _ why: String) -> Result<CourierSizeList, UIDLStateError> {
            .failure(UIDLStateError("\(fileName) line \(line): \(why)"))
        }
        guard !bytes.isEmpty else { return .failure(UIDLStateError("\(fileName) is empty")) }
        guard bytes.last == UInt8(ascii: "\n") else {
            return .failure(UIDLStateError("\(fileName) is truncated (its last line has no LF)"))
        }
        var lineNumber = 0
        var start = 0
        var header: (version: Int, next: UInt64, validity: UInt64?)? = nil
        // Built in locals, not in a copy of the struct: mutating a copy of a dictionary
        // that is still referenced copies it whole, once per line.
        var uidls: [String: String] = [:]
        var seenUIDLs = Set<String>()
        while start < bytes.count {
            guard let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { break }
            lineNumber += 1
            let line = bytes[start..<end]
            start = end + 1
            guard line.count <= maxLineBytes else { return bad(lineNumber, "longer than \(maxLineBytes) octets") }
            if header == nil {
                // Header: "/<version> <next UID>[ <UIDVALIDITY>]".
                guard line.first == UInt8(ascii: "/") else { return bad(lineNumber, "no \"/<version>\" header") }
                let fields = line.dropFirst().split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
                guard fields.count == 2 || fields.count == 3, let version = MaildirName.parseDecimal(fields[0]) else {
                    return bad(lineNumber, "header is not \"/<version> <next UID> <UIDVALIDITY>\"")
                }
                guard versions.contains(version) else {
                    return bad(lineNumber, "version \(version) is not one Courier writes (2 or 3)")
                }
                guard let next = parseUInt64(fields[1]) else { return bad(lineNumber, "next UID is not a number") }
                var validity: UInt64? = nil
                if fields.count == 3 {
                    guard let v = parseUInt64(fields[2]) else { return bad(lineNumber, "UIDVALIDITY is not a number") }
                    validity = v
                }
                header = (version, next, validity)
                let estimate = bytes.count / 48
                uidls.reserveCapacity(estimate)
                seenUIDLs.reserveCapacity(estimate)
                continue
            }
            // Record: "<name> <size> <UID>:<UIDVALIDITY>[:<utf8>]", numbers taken from the end.
            guard let space2 = line.lastIndex(of: UInt8(ascii: " ")),
                  let space1 = line[..<space2].lastIndex(of: UInt8(ascii: " ")), space1 > line.startIndex
            else { return bad(lineNumber, "not \"<file name> <size> <UID>:<UIDVALIDITY>\"") }
            let name = line[line.startIndex..<space1]
            guard !name.contains(UInt8(ascii: "/")), !name.contains(0),
                  String(validating: name, as: UTF8.self) != nil
            else { return bad(lineNumber, "file name is not a Maildir file name") }
            guard MaildirName.parseDecimal(line[(space1 + 1)..<space2]) != nil else {
                return bad(lineNumber, "size is not a number")
            }
            let ids = line[(space2 + 1)...].split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
            guard ids.count == 2 || ids.count == 3, let uid = parseUInt64(ids[0]), let validity = parseUInt64(ids[1]),
                  ids.count == 2 || ids[2].elementsEqual([UInt8(ascii: "0")]) || ids[2].elementsEqual([UInt8(ascii: "1")])
            else { return bad(lineNumber, "\"\(String(decoding: line[(space2 + 1)...], as: UTF8.self))\" is not <UID>:<UIDVALIDITY>[:0|1]") }
            let unique = uniqueName(name)
            let uidl = uidlFor(uid: uid, uidValidity: validity, fileName: name)
            guard uidls[unique] == nil else { return bad(lineNumber, "a second record for \(unique)") }
            guard seenUIDLs.insert(uidl).inserted else { return bad(lineNumber, "UIDL \(uidl) given twice (duplicate UID)") }
            uidls[unique] = uidl
        }
        guard let header else { return .failure(UIDLStateError("\(fileName) has no header")) }
        return .success(CourierSizeList(version: header.version, nextUID: header.next, uidValidity: header.validity, uidls: uidls))
    }

    /// `MaildirName(name).uniqueName` without its parse of times and sizes (a login with
    /// `uidl_format: courier` makes one per record): the name up to `:`, without the `,S=`
    /// and `,W=` fields after the first piece.
    static func uniqueName(_ name: ArraySlice<UInt8>) -> String {
        let base = name.prefix { $0 != UInt8(ascii: ":") }
        guard base.contains(UInt8(ascii: ",")) else { return String(decoding: base, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(base.count)
        var first = true
        for piece in base.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            if !first, piece.count >= 2, piece[piece.startIndex + 1] == UInt8(ascii: "="),
               piece[piece.startIndex] == UInt8(ascii: "S") || piece[piece.startIndex] == UInt8(ascii: "W") {
                continue
            }
            if !first { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: piece)
            first = false
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The UIDL Courier's `print_uidl` gives a record (see the type's documentation).
    static func uidlFor(uid: UInt64, uidValidity: UInt64, fileName: ArraySlice<UInt8>) -> String {
        if uid != 0 {
            return uidValidity != 0 ? "UID\(uid)-\(uidValidity)" : "UID\(uid)"
        }
        // Courier's "version 0" UIDL: the name up to the info separator, escaped.
        var out: [UInt8] = []
        let hex = Array("0123456789ABCDEF".utf8)
        for b in fileName {
            if b == UInt8(ascii: ":") { break }
            if b < 0x21 || b > 0x7E || b == UInt8(ascii: "'") || b == UInt8(ascii: "\"") || b == UInt8(ascii: "+") {
                out.append(UInt8(ascii: "+"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// An unsigned decimal of at most 20 digits that fits 64 bits (Courier's `unsigned long`).
    static func parseUInt64(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard !digits.isEmpty, digits.count <= 20 else { return nil }
        var v: UInt64 = 0
        for d in digits {
            guard d >= 0x30, d <= 0x39 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(d - 0x30))
            if o1 || o2 { return nil }
            v = s
        }
        return v
    }

    /// Courier's message order (`cmpmsgs`): the leading decimal seconds of the name (C `atol`),
    /// then the octets of the name up to `:` (a name in new/, which Courier would have moved to
    /// cur/ with `:2,`, compares as if it ended there). pop3d numbers messages in this order
    /// with `uidl_format: courier`, so that `UIDL` lists exactly what Courier listed.
    static func sortInCourierOrder(_ messages: inout [MessageInfo]) {
        // Keys made once per message, not once per comparison.
        var keyed = messages.map { (key: sortKey($0.fileName), info: $0) }
        keyed.sort { a, b in
            if a.key.seconds != b.key.seconds { return a.key.seconds < b.key.seconds }
            return a.key.base.lexicographicallyPrecedes(b.key.base)
        }
        messages = keyed.map(\.info)
    }

    /// Seconds as C's `atol` reads them (leading digits, saturating instead of overflowing)
    /// and the name up to `:` followed by `:` (Courier's loop compares up to both separators).
    private static func sortKey(_ fileName: String) -> (seconds: Int, base: [UInt8]) {
        var seconds = 0
        var base: [UInt8] = []
        var digits = true
        for b in fileName.utf8 {
            if b == UInt8(ascii: ":") { break }
            if digits && b >= 0x30 && b <= 0x39 {
                let (m, o1) = seconds.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(Int(b - 0x30))
                seconds = (o1 || o2) ? Int.max : s
            } else {
                digits = false
            }
            base.append(b)
        }
        base.append(UInt8(ascii: ":"))
        return (seconds, base)
    }
}

/// Why a UIDL state file (Courier's, pop3d's own) cannot be used: a sentence for the log,
/// `pop3d uidl check` and `pop3d uidl import`.
public struct UIDLStateError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The sentence for the log, naming the file (and the line, when one does not parse).
    public var description: String
    init(_ description: String) { self.description = description }
}
