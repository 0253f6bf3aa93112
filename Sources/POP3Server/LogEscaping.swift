import ByteCodec
import Logging

/// Escapes text for one log line, at the byte level.
///
/// Client- and file-supplied text reaches the log: user names sent before login (USER, AUTH
/// PLAIN/LOGIN/CRAM-MD5/SCRAM-SHA-256), file names and error descriptions in the message
/// text. Anything that a terminal, journald, syslog or a log watcher (fail2ban) may take for
/// the end of a line, or for a control sequence, must not pass through raw, or a client forges
/// lines ("login ok user=root") or gets a third party banned.
///
/// The work is done on the UTF-8 octets (and the scalars they encode), never on `Character`s:
/// Swift treats `"\r\n"` as one Character, which a `case "\n"` does not match.
///
/// Escaped, in message text and in values alike:
/// - C0 controls 0x00-0x1F and DEL 0x7F: `\n`, `\r`, `\t`, else `\xHH` (ESC is `\x1b`);
/// - C1 controls U+0080-U+009F, NEL U+0085 among them: `\u0085`;
/// - LINE SEPARATOR U+2028 and PARAGRAPH SEPARATOR U+2029: `\u2028`, `\u2029`;
/// - octets that are not well-formed UTF-8 (RFC 3629 §4): `\xHH` each;
/// - the backslash itself (`\\`), so that an escape in the output always means an escape.
public enum LogEscaping {
    /// Message text: escaped, never quoted.
    public static func text(_ text: String) -> String {
        var text = text
        return text.withUTF8 { bytes in
            guard needsEscape(bytes, quoting: false) else { return nil }
            return escape(bytes, quoting: false)
        } ?? text
    }

    /// A metadata value: as it is when it is a non-empty token of printable text without
    /// space, `=`, `"` or anything to escape; otherwise in double quotes, with `"` escaped too.
    public static func value(_ value: String) -> String {
        var value = value
        return value.withUTF8 { bytes in
            guard needsQuotes(bytes) else { return nil }
            return "\"" + escape(bytes, quoting: true) + "\""
        } ?? value
    }

    /// A metadata value given as octets that may not be UTF-8 (a user name from SASL), by the
    /// same rules as `value(_:)`: an invalid octet is written `\xHH` inside quotes.
    public static func value(bytes: [UInt8]) -> String {
        bytes.withUnsafeBufferPointer { bytes in
            needsQuotes(bytes) ? "\"" + escape(bytes, quoting: true) + "\"" : String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Empty, or holding a space, `=` or anything `escape` changes inside quotes.
    static func needsQuotes(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        bytes.isEmpty || needsEscape(bytes, quoting: true) || bytes.contains(where: { $0 == 0x20 || $0 == 0x3D })
    }

    /// Escapes octets that may not be valid UTF-8 (see the type's rules).
    public static func escape(bytes: some Collection<UInt8>, quoting: Bool = false) -> String {
        let array = Array(bytes)
        return array.withUnsafeBufferPointer { escape($0, quoting: quoting) }
    }

    // MARK: byte level

    /// True when `escape` would change something.
    static func needsEscape(_ bytes: UnsafeBufferPointer<UInt8>, quoting: Bool) -> Bool {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x80 {
                if b < 0x20 || b == 0x7F || b == 0x5C || (quoting && b == 0x22) { return true }
                i += 1
                continue
            }
            guard let (scalar, length) = decode(bytes, at: i), !isLineOrControl(scalar) else { return true }
            i += length
        }
        return false
    }

    static func escape(_ bytes: UnsafeBufferPointer<UInt8>, quoting: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        appendEscaped(bytes, quoting: quoting, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `escape`'s octets appended to `out` (the session-end line writes them in place).
    static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, quoting: Bool, to out: inout [UInt8]) {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x80 {
                switch b {
                case 0x0A: out += [0x5C, UInt8(ascii: "n")]
                case 0x0D: out += [0x5C, UInt8(ascii: "r")]
                case 0x09: out += [0x5C, UInt8(ascii: "t")]
                case 0x5C: out += [0x5C, 0x5C]
                case 0x22 where quoting: out += [0x5C, 0x22]
                case 0..<0x20, 0x7F: appendHexByte(b, to: &out)
                default: out.append(b)
                }
                i += 1
                continue
            }
            guard let (scalar, length) = decode(bytes, at: i) else {
                appendHexByte(b, to: &out)
                i += 1
                continue
            }
            if isLineOrControl(scalar) {
                out += [0x5C, UInt8(ascii: "u")]
                out.appendHex(UInt64(scalar), minimumDigits: 4)  // at most U+2029: 4 digits
            } else {
                out += bytes[i..<(i + length)]
            }
            i += length
        }
    }

    /// C1 controls (NEL is U+0085) and the Unicode line and paragraph separators.
    @inline(__always)
    static func isLineOrControl(_ scalar: UInt32) -> Bool {
        (0x80...0x9F).contains(scalar) || scalar == 0x2028 || scalar == 0x2029
    }

    /// The scalar of the well-formed UTF-8 sequence at `i` (RFC 3629 §4: no overlong forms,
    /// no surrogates, nothing above U+10FFFF) and its length; nil when it is not one.
    static func decode(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (UInt32, Int)? {
        let lead = bytes[i]
        let length: Int
        var second: ClosedRange<UInt8> = 0x80...0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; second = 0xA0...0xBF
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; second = 0x80...0x9F
        case 0xF0: length = 4; second = 0x90...0xBF
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; second = 0x80...0x8F
        default: return nil
        }
        guard bytes.count - i >= length, second.contains(bytes[i + 1]) else { return nil }
        var scalar = UInt32(lead) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for k in 1..<length {
            let c = bytes[i + k]
            guard c & 0xC0 == 0x80 else { return nil }
            scalar = scalar << 6 | UInt32(c & 0x3F)
        }
        return (scalar, length)
    }

    private static func appendHexByte(_ b: UInt8, to out: inout [UInt8]) {
        out += [0x5C, UInt8(ascii: "x")]
        out.appendHex(UInt64(b), minimumDigits: 2)
    }
}

/// A log metadata value made of octets that may not be UTF-8 (a user name as the client sent
/// it), cut to at most `maxOctets`. `StderrLogHandler` escapes the octets themselves
/// (`LogEscaping.value(bytes:)`), so a name that is not UTF-8 is logged exactly (`\xff`) rather
/// than with U+FFFD; any other log handler gets `description`, the same escaped text.
struct LoggedOctets: CustomStringConvertible, Sendable {
    /// The octets logged: all of them, or the first `maxOctets` cut back to a UTF-8 boundary.
    let octets: [UInt8]
    /// Octets the client sent: more than `octets.count` when cut.
    let fullCount: Int

    /// Longest user name a log line carries whole (README, limits table): a PLAIN or LOGIN
    /// name may be up to the SASL response limit (8 KiB, 32 KiB escaped) and a log line per
    /// failed login should not be that. Longer names are cut, and the line says so
    /// (`user.truncated=` with the full length in octets).
    static let maxOctets = 256

    init(_ bytes: some Collection<UInt8>) {
        let all = Array(bytes)
        fullCount = all.count
        guard all.count > Self.maxOctets else {
            octets = all
            return
        }
        // Back off to a scalar boundary (at most 3 continuation octets), so a cut name ends in
        // whole characters rather than `\xHH` fragments.
        var cut = Self.maxOctets
        var backedOff = 0
        while backedOff < 3, cut > 0, all[cut] & 0xC0 == 0x80 {
            cut -= 1
            backedOff += 1
        }
        if backedOff == 3 && all[cut] & 0xC0 == 0x80 { cut = Self.maxOctets }  // not UTF-8 anyway
        octets = Array(all[..<cut])
    }

    var isTruncated: Bool { fullCount > octets.count }

    var description: String { LogEscaping.value(bytes: octets) }
}

extension Logger.Metadata {
    /// Sets `key` to the user name as sent (escaped and maybe cut, `LoggedOctets`), and
    /// `key.truncated` to its full length in octets when it was cut.
    mutating func setUserName(_ name: some Collection<UInt8>, key: String = "user") {
        let logged = LoggedOctets(name)
        self[key] = .stringConvertible(logged)
        if logged.isTruncated { self[key + ".truncated"] = "\(logged.fullCount)" }
    }
}
