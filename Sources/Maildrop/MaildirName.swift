import Glibc

/// What Maildrop learns from a Maildir file name such as
/// `1700000000.M123456P789.host,S=1234,W=1260:2,S` (Dovecot) or
/// `1700000000.V801I1234M567890.host` (Postfix).
///
/// The *base* is the part before the info separator `:` (the `:2,` flags);
/// the *unique name* is the base without `,S=`/`,W=` fields. Both survive flag
/// changes and the move from new/ to cur/, which is why UIDs and re-finding a
/// renamed file use the unique name.
///
/// Parsed in one pass over the name's UTF-8 octets in place (issue 17: a login parses every
/// name it lists, and the `split` into arrays this replaced was 60k instructions of a
/// 10-message session). A name without `:` and without `S=`/`W=` fields *is* its unique name:
/// the same `String`, no copy. Only a name with `S=`/`W=` fields between other pieces needs
/// a second, copying walk.
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
        // Native Swift strings (every name the listing makes) are contiguous UTF-8.
        let fields = fileName.utf8.withContiguousStorageIfAvailable { MaildirName.scan($0) }
            ?? Array(fileName.utf8).withUnsafeBufferPointer { MaildirName.scan($0) }
        let unique: String
        if !fields.removed {
            // The base as it is: the whole name when it has no info part.
            if fields.baseEnd == fileName.utf8.count {
                unique = fileName
            } else {
                unique = fileName.utf8.withContiguousStorageIfAvailable {
                    String(decoding: UnsafeBufferPointer(rebasing: $0[0..<fields.baseEnd]), as: UTF8.self)
                } ?? String(decoding: Array(fileName.utf8)[0..<fields.baseEnd], as: UTF8.self)
            }
        } else {
            unique = fileName.utf8.withContiguousStorageIfAvailable { MaildirName.withoutSizeFields($0, baseEnd: fields.baseEnd) }
                ?? Array(fileName.utf8).withUnsafeBufferPointer { MaildirName.withoutSizeFields($0, baseEnd: fields.baseEnd) }
        }
        self.uniqueName = unique
        self.sField = fields.s
        self.wField = fields.w
        let times = unique.utf8.withContiguousStorageIfAvailable { MaildirName.deliveryTime($0) }
            ?? Array(unique.utf8).withUnsafeBufferPointer { MaildirName.deliveryTime($0) }
        self.seconds = times.seconds
        self.microseconds = times.microseconds
    }

    /// The one pass: where the base ends (the first `:`), the `S=`/`W=` values, and whether
    /// any `S=`/`W=` piece (after the first `,`-separated piece) is to be cut from the base.
    /// A piece `S=x` with a non-numeric `x` is cut too, with a nil value (as before).
    private static func scan(_ b: UnsafeBufferPointer<UInt8>) -> (baseEnd: Int, s: Int?, w: Int?, removed: Bool) {
        var s: Int? = nil
        var w: Int? = nil
        var removed = false
        // The first piece is always part of the unique name, whatever it looks like. It ends at
        // the first "," or ":": found by memchr (issue 17), the "," only before the ":".
        var i = b.count
        if let p = b.baseAddress {
            if let colon = memchr(p, Int32(UInt8(ascii: ":")), b.count) { i = UnsafeRawPointer(colon) - UnsafeRawPointer(p) }
            if let comma = memchr(p, Int32(UInt8(ascii: ",")), i) { i = UnsafeRawPointer(comma) - UnsafeRawPointer(p) }
        }
        while i < b.count, b[i] == UInt8(ascii: ",") {
            let start = i + 1
            var end = start
            while end < b.count, b[end] != UInt8(ascii: ","), b[end] != UInt8(ascii: ":") { end += 1 }
            if end - start >= 2, b[start + 1] == UInt8(ascii: "=") {
                if b[start] == UInt8(ascii: "S") {
                    s = parseDecimal(b, start + 2, end)
                    removed = true
                } else if b[start] == UInt8(ascii: "W") {
                    w = parseDecimal(b, start + 2, end)
                    removed = true
                }
            }
            i = end
        }
        return (i, s, w, removed)
    }

    /// The base `b[0..<baseEnd]` without its `S=`/`W=` pieces (the rare second walk).
    private static func withoutSizeFields(_ b: UnsafeBufferPointer<UInt8>, baseEnd: Int) -> String {
        String(unsafeUninitializedCapacity: baseEnd) { out in
            var n = 0
            var i = 0
            while i < baseEnd, b[i] != UInt8(ascii: ",") {
                out[n] = b[i]
                n += 1
                i += 1
            }
            while i < baseEnd {  // at a ','
                let start = i + 1
                var end = start
                while end < baseEnd, b[end] != UInt8(ascii: ",") { end += 1 }
                let sized = end - start >= 2 && b[start + 1] == UInt8(ascii: "=")
                    && (b[start] == UInt8(ascii: "S") || b[start] == UInt8(ascii: "W"))
                if !sized {
                    for j in i..<end {
                        out[n] = b[j]
                        n += 1
                    }
                }
                i = end
            }
            return n
        }
    }

    /// Delivery time: "<seconds>.<fields>.<host>" (qmail's maildir(5)), read from the
    /// unique name `u`.
    private static func deliveryTime(_ u: UnsafeBufferPointer<UInt8>) -> (seconds: UInt64?, microseconds: UInt64) {
        var dot1 = 0
        while dot1 < u.count, u[dot1] != UInt8(ascii: ".") { dot1 += 1 }
        let seconds = parseDecimal(u, 0, dot1).map { UInt64($0) }
        guard dot1 < u.count else { return (seconds, 0) }
        var dot2 = dot1 + 1
        while dot2 < u.count, u[dot2] != UInt8(ascii: ".") { dot2 += 1 }
        // Postfix writes "V<dev>I<ino>M<usec>", Dovecot "M<usec>P<pid>":
        // the microseconds follow an 'M' wherever it sits.
        var m = dot1 + 1
        while m < dot2, u[m] != UInt8(ascii: "M") { m += 1 }
        guard m < dot2 else { return (seconds, 0) }
        var end = m + 1
        while end < dot2, u[end] >= 0x30, u[end] <= 0x39 { end += 1 }
        return (seconds, parseDecimal(u, m + 1, end).map { UInt64($0) } ?? 0)
    }

    /// The UIDL of RFC 1939 §7: the unique name when it is short and printable
    /// (0x21–0x7E), else the hex SHA-256 of it, which is stable across hosts.
    var uid: String {
        let utf8 = uniqueName.utf8
        if utf8.count <= MaildirName.maxVerbatimUIDLength, !utf8.isEmpty,
           utf8.withContiguousStorageIfAvailable(MaildirName.printable) ?? utf8.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) {
            return uniqueName
        }
        return SHA256.hex(Array(utf8))
    }

    /// Every octet in 0x21–0x7E (a loop over the buffer: `allSatisfy` on the `UTF8View` cost
    /// about 1,000 instructions per name, issue 17), eight octets at a time: an octet below
    /// 0x21 or above 0x7E sets the top bit of its lane in `(x - 0x21…) & ~x` or in
    /// `(x + 0x01…) | x` (the "has less" and "has more" tests of Bit Twiddling Hacks, exact for
    /// bounds up to 0x80; a borrow or carry only crosses into a higher lane from a lane that
    /// itself is flagged).
    static func printable(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let p = b.baseAddress else { return true }
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        var i = 0
        while i + 8 <= b.count {
            let x = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
            let below = (x &- ones &* 0x21) & ~x
            let above = (x &+ ones) | x
            if (below | above) & highs != 0 { return false }
            i += 8
        }
        while i < b.count {
            if b[i] < 0x21 || b[i] > 0x7E { return false }
            i += 1
        }
        return true
    }

    /// The most decimal digits a parsed number may have: 18 fit `Int` without overflow
    /// (10^18 - 1 < 2^63 - 1), so the digit loop needs no overflow check.
    static let maxDecimalDigits = 18

    /// Decimal digits only, at most `maxDecimalDigits` of them (`parseDecimal(_:_:_:)`).
    static func parseDecimal(_ digits: ArraySlice<UInt8>) -> Int? {
        digits.withUnsafeBufferPointer { parseDecimal($0, 0, $0.count) }
    }

    /// `b[from..<to]` as a decimal number: digits only, 1 to `maxDecimalDigits` of them, in place.
    @inline(__always)
    static func parseDecimal(_ b: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> Int? {
        guard let (value, end) = parseDecimalPrefix(b, from, to), end == to else { return nil }
        return value
    }

    /// The decimal number of the digits at `b[from...]`, read up to the first octet that is
    /// not a digit or to `to`, whichever comes first, and `end`, the index after its last
    /// digit; nil when there is no digit at `from`. Stops after `maxDecimalDigits` digits: a
    /// longer run leaves a digit at `end`, which a caller checking the octet that must end the
    /// number (`parseDecimal`: `to`; the size cache: its delimiter) refuses. The digit loop of
    /// `parseDecimal` (Maildir names' fields, courierpop3dsizelist's version) and of the
    /// size cache's table; `CourierSizeList`'s 64-bit fields and `DovecotUIDList` keep their own.
    @inline(__always)
    static func parseDecimalPrefix(_ b: UnsafeBufferPointer<UInt8>, _ from: Int, _ to: Int) -> (value: Int, end: Int)? {
        let limit = Swift.min(to, from &+ maxDecimalDigits)
        var i = from
        var v = 0
        while i < limit {
            let d = b[i] &- 0x30
            guard d <= 9 else { break }
            v = v &* 10 &+ Int(d)
            i += 1
        }
        return i > from ? (v, i) : nil
    }
}
