/// What Maildrop learns from a Maildir file name such as
/// `1700000000.M123456P789.host,S=1234,W=1260:2,S` (Dovecot) or
/// `1700000000.V801I1234M567890.host` (Postfix).
///
/// The *base* is the part before the info separator `:` (the `:2,` flags);
/// the *unique name* is the base without `,S=`/`,W=` fields. Both survive flag
/// changes and the move from new/ to cur/, which is why UIDs and re-finding a
/// renamed file use the unique name.
struct MaildirName: Sendable {
    /// Longest unique name used verbatim as a UIDL; longer ones are hashed.
    /// RFC 1939 §7 (UIDL) allows at most 70 characters.
    static let maxVerbatimUIDLength = 70

    let uniqueName: String
    /// Leading decimal seconds of the name (delivery time), nil when absent.
    let seconds: UInt64?
    /// Microseconds from the `M` field of the second dot component, else 0.
    let microseconds: UInt64
    /// `S=` (file size in octets) when present and numeric.
    let sField: Int?
    /// `W=` (size with CRLF line endings) when present and numeric.
    let wField: Int?

    init(_ fileName: String) {
        let bytes = Array(fileName.utf8)
        // RFC-less but universal: the info part starts at the first ':'.
        let baseEnd = bytes.firstIndex(of: UInt8(ascii: ":")) ?? bytes.count
        let base = bytes[0..<baseEnd]

        // Split the base at ',' : the first piece is the unique core, the
        // rest are key=value fields (Dovecot: S=, W=; others keep theirs).
        var unique: [UInt8] = []
        unique.reserveCapacity(base.count)
        var s: Int? = nil
        var w: Int? = nil
        var first = true
        for piece in base.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            if !first, piece.count >= 2, piece[piece.startIndex + 1] == UInt8(ascii: "=") {
                let key = piece[piece.startIndex]
                let value = MaildirName.parseDecimal(piece.dropFirst(2))
                if key == UInt8(ascii: "S") { s = value; continue }
                if key == UInt8(ascii: "W") { w = value; continue }
            }
            if !first { unique.append(UInt8(ascii: ",")) }
            unique.append(contentsOf: piece)
            first = false
        }
        self.uniqueName = String(decoding: unique, as: UTF8.self)
        self.sField = s
        self.wField = w

        // Delivery time: "<seconds>.<fields>.<host>" (qmail's maildir(5)).
        let dot1 = unique.firstIndex(of: UInt8(ascii: ".")) ?? unique.count
        self.seconds = MaildirName.parseDecimal(unique[0..<dot1]).map { UInt64($0) }
        var usec: UInt64 = 0
        if dot1 < unique.count {
            let rest = unique[(dot1 + 1)...]
            let dot2 = rest.firstIndex(of: UInt8(ascii: ".")) ?? rest.endIndex
            let middle = rest[rest.startIndex..<dot2]
            // Postfix writes "V<dev>I<ino>M<usec>", Dovecot "M<usec>P<pid>":
            // the microseconds follow an 'M' wherever it sits.
            if let m = middle.firstIndex(of: UInt8(ascii: "M")) {
                var end = m + 1
                while end < middle.endIndex, middle[end] >= 0x30, middle[end] <= 0x39 { end += 1 }
                if let v = MaildirName.parseDecimal(middle[(m + 1)..<end]) { usec = UInt64(v) }
            }
        }
        self.microseconds = usec
    }

    /// The UIDL of RFC 1939 §7: the unique name when it is short and printable
    /// (0x21–0x7E), else the hex SHA-256 of it, which is stable across hosts.
    var uid: String {
        let utf8 = uniqueName.utf8
        if utf8.count <= MaildirName.maxVerbatimUIDLength, !utf8.isEmpty,
           utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) {
            return uniqueName
        }
        return SHA256.hex(Array(utf8))
    }

    /// Decimal digits only, at most 18 of them (fits Int without overflow).
    static func parseDecimal(_ digits: ArraySlice<UInt8>) -> Int? {
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var v = 0
        for d in digits {
            guard d >= 0x30, d <= 0x39 else { return nil }
            v = v * 10 + Int(d - 0x30)
        }
        return v
    }
}
