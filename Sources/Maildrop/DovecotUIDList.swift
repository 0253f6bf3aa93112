import Glibc

/// Dovecot's `dovecot-uidlist`: the IMAP UID and UIDVALIDITY of every message of a Maildir,
/// which Dovecot's default `pop3_uidl_format = %08Xu%08Xv` turns into POP3 UIDLs (issue 14).
///
/// Format (Dovecot's docs, "Maildir Mailbox Format" → "IMAP UID mapping", and the comment
/// at the top of `maildir-uidlist.c`), one line each, LF-terminated:
/// - version 3 header: `3 V<uidvalidity> N<next uid> G<mailbox guid> [<key><value> ...]`,
///   fields in any order; `V` and `N` decimal 32-bit and non-zero, `G` 32 hex digits; other
///   keys (Dovecot's header `P`, the POP3 UIDL format in use) are kept as they are;
/// - version 3 record: `<uid> [<key><value> ...] :<base file name>`, keys `A`–`Z`
///   (`S` physical size, `W` virtual size, `P` the POP3 UIDL that `pop3_save_uidl` stored,
///   overriding the format; `O` the POP3 order; `G` a message GUID);
/// - version 1 (Dovecot 1.0, Courier's `courierimapuiddb`): header `1 <uidvalidity> <next uid>`,
///   records `<uid> <file name>`, every UID below the next UID.
///
/// The base file name is the name up to the `:` of the flags, `,S=`/`,W=` fields included:
/// Dovecot keys records by it (`maildir_filename_base_cmp`), so pop3d does too.
///
/// Parsing is all or nothing (`parse` returns why not): records must have strictly increasing
/// UIDs below 2³²−1, and anything Dovecot itself calls a broken file (it logs it and deletes
/// the file) is refused here, where the file is instead left alone. A record keeps its line's
/// bytes, so rewriting the file (`serialize`) reproduces every record octet for octet.
struct DovecotUIDList {
    static let fileName = "dovecot-uidlist"
    /// Largest `dovecot-uidlist` read at all: 64 MiB hold about 800,000 records of typical
    /// length (a 100,000-message Maildir's file is about 6 MiB). A larger file is "cannot
    /// parse" (the session's UIDLs fall back to `maildir`), never read.
    static let maxFileBytes = 64 << 20
    /// Largest `dovecot-uidlist` a `quick` open reads on the event loop: 64 KiB, about 800
    /// records, parsed in well under a millisecond. A larger one is read on a storage worker.
    static let quickReadBytes = 64 * 1024

    struct Record {
        var uid: UInt32
        /// The record's line in `bytes` (without its LF); empty for a record added by pop3d.
        var line: Range<Int>
        /// The base file name, in `bytes` for a record read from the file.
        var name: ArraySlice<UInt8>
        /// The `P` extension: the message's UIDL whatever the format (`pop3_save_uidl`). An
        /// empty one means the base file name (Dovecot's `maildir_mail_get_special`).
        var pop3UIDL: String?
        /// The `O` extension: the message's place in the POP3 listing.
        var pop3Order: UInt32?
    }

    var version: Int
    var uidValidity: UInt32
    var nextUID: UInt32
    /// `G`: the mailbox GUID as written (32 hex digits), nil when absent (Dovecot adds one).
    var guid: String?
    /// Header fields other than V, N and G, as written, in order.
    var headerExtras: [ArraySlice<UInt8>] = []
    /// The file as read: records point into it.
    var bytes: [UInt8] = []
    var records: [Record] = []
    /// Base name → index in `records`. A name listed twice maps to its later record, as in
    /// Dovecot (an expunged file moved back and appended again).
    var byName: [NameKey: Int] = [:]

    /// A base name as a dictionary key, hashed and compared as one block of octets (an
    /// `ArraySlice`'s own hashing goes octet by octet: 10x slower on 100,000 records).
    struct NameKey: Hashable {
        let bytes: ArraySlice<UInt8>
        init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }
        func hash(into hasher: inout Hasher) {
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
        static func == (a: NameKey, b: NameKey) -> Bool {
            guard a.bytes.count == b.bytes.count else { return false }
            return a.bytes.withUnsafeBytes { pa in
                b.bytes.withUnsafeBytes { pb in
                    guard let x = pa.baseAddress, let y = pb.baseAddress else { return pa.count == 0 }
                    return memcmp(x, y, pa.count) == 0
                }
            }
        }
    }

    /// An empty list, as Dovecot creates it for a mailbox without one: UIDVALIDITY from the
    /// clock (Dovecot's fallback when it has no index header to take it from), next UID 1.
    init(uidValidity: UInt32, guid: String) {
        self.version = 3
        self.uidValidity = uidValidity
        self.nextUID = 1
        self.guid = guid
    }

    private init(version: Int, uidValidity: UInt32, nextUID: UInt32) {
        self.version = version
        self.uidValidity = uidValidity
        self.nextUID = nextUID
    }

    /// Parses a whole file. Returns the list, or why it cannot be used (for the log).
    static func parse(_ bytes: [UInt8]) -> Result<DovecotUIDList, ParseFailure> {
        guard !bytes.isEmpty else { return .failure(ParseFailure(line: 0, "empty file")) }
        guard bytes.last == 0x0A else { return .failure(ParseFailure(line: 0, "truncated: no line end after the last line")) }
        if bytes.contains(0) { return .failure(ParseFailure(line: 0, "NUL octet in the file")) }
        var list: DovecotUIDList
        var lineNumber = 1
        guard let headerEnd = bytes.firstIndex(of: 0x0A) else { return .failure(ParseFailure(line: 1, "no header")) }
        switch parseHeader(bytes[0..<headerEnd]) {
        case .ok(let h): list = h
        case .bad(let why): return .failure(ParseFailure(line: 1, why))
        }
        // One record per line: sized once (growing a 100,000-entry dictionary step by step
        // costs a third of the parse).
        var lines = 0
        for b in bytes where b == 0x0A { lines += 1 }
        list.records.reserveCapacity(lines)
        list.byName.reserveCapacity(lines)
        var previous: UInt32 = 0
        var start = headerEnd + 1
        while start < bytes.count {
            lineNumber += 1
            var end = start
            while bytes[end] != 0x0A { end += 1 }  // the file ends with LF: always found
            switch list.parseRecord(bytes[start..<end], previous: previous) {
            case .ok(var record):
                record.line = start..<end
                previous = record.uid
                list.byName[NameKey(record.name)] = list.records.count
                list.records.append(record)
            case .bad(let why):
                return .failure(ParseFailure(line: lineNumber, why))
            }
            start = end + 1
        }
        // As Dovecot: a next UID not above the last record's is raised past it.
        if list.nextUID <= previous { list.nextUID = previous &+ 1 }
        list.bytes = bytes
        return .success(list)
    }

    /// A part of the file parsed, or why not.
    enum Parsed<T> {
        case ok(T)
        case bad(String)
    }

    struct ParseFailure: Error, Equatable, CustomStringConvertible {
        var line: Int
        var reason: String
        init(line: Int, _ reason: String) { self.line = line; self.reason = reason }
        var description: String { line > 0 ? "line \(line): \(reason)" : reason }
    }

    private static func parseHeader(_ line: ArraySlice<UInt8>) -> Parsed<DovecotUIDList> {
        guard line.count >= 2, let v = line.first, v >= 0x30, v <= 0x39, line[line.startIndex + 1] == 0x20 else {
            return .bad("invalid version number in the header")
        }
        let rest = line.dropFirst(2)
        switch v {
        case 0x31:  // 1 <uidvalidity> <next uid>
            let fields = rest.split(separator: 0x20)
            guard fields.count == 2, let uv = decimal32(fields[0]), let next = decimal32(fields[1]) else {
                return .bad("version 1 header is not \"1 <uidvalidity> <next uid>\"")
            }
            guard uv != 0, next != 0 else { return .bad("header has UIDVALIDITY \(uv), next UID \(next)") }
            return .ok(DovecotUIDList(version: 1, uidValidity: uv, nextUID: next))
        case 0x33:
            var uv: UInt32 = 0, next: UInt32 = 0
            var guid: String? = nil
            var extras: [ArraySlice<UInt8>] = []
            for field in rest.split(separator: 0x20) {
                let key = field[field.startIndex]
                let value = field.dropFirst()
                switch key {
                case UInt8(ascii: "V"):
                    guard let n = decimal32(value) else { return .bad("invalid UIDVALIDITY in the header") }
                    uv = n
                case UInt8(ascii: "N"):
                    guard let n = decimal32(value) else { return .bad("invalid next UID in the header") }
                    next = n
                case UInt8(ascii: "G"):
                    guard value.count == 32, value.allSatisfy(isHex) else { return .bad("invalid mailbox GUID in the header") }
                    guid = String(decoding: value, as: UTF8.self)
                default:
                    extras.append(field)
                }
            }
            guard uv != 0, next != 0 else { return .bad("header has UIDVALIDITY \(uv), next UID \(next)") }
            var list = DovecotUIDList(version: 3, uidValidity: uv, nextUID: next)
            list.guid = guid
            list.headerExtras = extras
            return .ok(list)
        default:
            return .bad("unsupported version \(v - 0x30)")
        }
    }

    private func parseRecord(_ line: ArraySlice<UInt8>, previous: UInt32) -> Parsed<Record> {
        var i = line.startIndex
        var uid: UInt64 = 0
        while i < line.endIndex, line[i] >= 0x30, line[i] <= 0x39 {
            uid = uid * 10 + UInt64(line[i] - 0x30)
            if uid >= UInt64(UInt32.max) { return .bad("UID too high") }
            i += 1
        }
        guard uid != 0, i < line.endIndex, line[i] == 0x20 else { return .bad("invalid record") }
        let uid32 = UInt32(uid)
        guard uid32 > previous else { return .bad("UIDs not increasing (\(uid32) after \(previous))") }
        if version == 1 && uid32 >= nextUID { return .bad("UID \(uid32) not below the next UID \(nextUID)") }
        while i < line.endIndex, line[i] == 0x20 { i += 1 }
        var pop3UIDL: String? = nil
        var pop3Order: UInt32? = nil
        if version == 3 {
            while i < line.endIndex, line[i] != UInt8(ascii: ":") {
                let start = i
                while i < line.endIndex, line[i] != 0x20 { i += 1 }
                let key = line[start]
                guard key >= UInt8(ascii: "A"), key <= UInt8(ascii: "Z") else {
                    return .bad("invalid extension field")
                }
                let value = line[(start + 1)..<i]
                if key == UInt8(ascii: "P") { pop3UIDL = String(decoding: value, as: UTF8.self) }
                if key == UInt8(ascii: "O") { pop3Order = DovecotUIDList.decimal32(value) }
                while i < line.endIndex, line[i] == 0x20 { i += 1 }
            }
            if i < line.endIndex { i += 1 }  // the ':'
        }
        let name = line[i...]
        guard !name.isEmpty else { return .bad("record without a file name") }
        guard !name.contains(UInt8(ascii: "/")) else { return .bad("file name with a '/'") }
        return .ok(Record(uid: uid32, line: 0..<0, name: name, pop3UIDL: pop3UIDL, pop3Order: pop3Order))
    }

    /// Decimal digits only, fitting 32 bits (Dovecot's `str_to_uint`).
    static func decimal32(_ digits: ArraySlice<UInt8>) -> UInt32? {
        guard !digits.isEmpty, digits.count <= 10 else { return nil }
        var v: UInt64 = 0
        for d in digits {
            guard d >= 0x30, d <= 0x39 else { return nil }
            v = v * 10 + UInt64(d - 0x30)
        }
        return v <= UInt64(UInt32.max) ? UInt32(v) : nil
    }

    private static func isHex(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) || (b >= 0x41 && b <= 0x46)
    }

    /// The base of a Maildir file name: up to the `:` of the flags (Dovecot's
    /// `MAILDIR_INFO_SEP`), `,S=`/`,W=` included.
    static func baseName(_ fileName: String) -> ArraySlice<UInt8> {
        let bytes = Array(fileName.utf8)
        let end = bytes.firstIndex(of: UInt8(ascii: ":")) ?? bytes.count
        return bytes[0..<end]
    }

    /// Gives `names` (base names not in the list, in any order) UIDs from the next UID on,
    /// in Dovecot's order for new files (`maildir_filename_sort_cmp`: the name's leading
    /// seconds, then the microseconds after an `M` in its second part when both have them,
    /// then the names' octets), and raises the next UID. Returns how many got one: fewer
    /// than asked only when the 32-bit UID space is used up.
    mutating func append(names: [ArraySlice<UInt8>]) -> Int {
        let sorted = names.sorted(by: DovecotUIDList.deliveredBefore)
        var added = 0
        for name in sorted where byName[NameKey(name)] == nil {
            guard nextUID < UInt32.max else { break }
            byName[NameKey(name)] = records.count
            records.append(Record(uid: nextUID, line: 0..<0, name: name, pop3UIDL: nil, pop3Order: nil))
            nextUID += 1
            added += 1
        }
        return added
    }

    /// Dovecot's `maildir_filename_sort_cmp`, as "a sorts before b".
    static func deliveredBefore(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
        func seconds(_ s: ArraySlice<UInt8>) -> (UInt64, ArraySlice<UInt8>.Index) {
            var v: UInt64 = 0
            var i = s.startIndex
            while i < s.endIndex, s[i] >= 0x30, s[i] <= 0x39 {
                v = v.multipliedReportingOverflow(by: 10).partialValue &+ UInt64(s[i] - 0x30)
                i += 1
            }
            return (v, i)
        }
        func micros(_ s: ArraySlice<UInt8>, from: Int) -> UInt64? {
            guard from < s.endIndex, s[from] == UInt8(ascii: ".") else { return nil }
            var i = from + 1
            while i < s.endIndex, s[i] != UInt8(ascii: "."), s[i] != UInt8(ascii: ":") {
                let c = s[i]
                i += 1
                if c == UInt8(ascii: "M") {
                    var v: UInt64 = 0
                    while i < s.endIndex, s[i] >= 0x30, s[i] <= 0x39 {
                        v = v.multipliedReportingOverflow(by: 10).partialValue &+ UInt64(s[i] - 0x30)
                        i += 1
                    }
                    return v
                }
            }
            return nil
        }
        let (sa, ia) = seconds(a)
        let (sb, ib) = seconds(b)
        if sa != sb { return sa < sb }
        if let ma = micros(a, from: ia), let mb = micros(b, from: ib), ma != mb { return ma < mb }
        return a[ia...].lexicographicallyPrecedes(b[ib...])
    }

    /// The file as Dovecot writes it: the header `3 V N G [extras]`, then every record in UID
    /// order, those read from the file octet for octet (a version 1 record becomes
    /// `<uid> :<name>`), those added as `<uid> :<name>`.
    func serialize() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 64 + records.count * 4)
        out.append(contentsOf: "3 V\(uidValidity) N\(nextUID) G\(guid ?? "")".utf8)
        for extra in headerExtras {
            out.append(0x20)
            out.append(contentsOf: extra)
        }
        out.append(0x0A)
        for r in records {
            if version == 3 && !r.line.isEmpty {
                out.append(contentsOf: bytes[r.line])
            } else {
                out.append(contentsOf: "\(r.uid) :".utf8)
                out.append(contentsOf: r.name)
            }
            out.append(0x0A)
        }
        return out
    }
}
