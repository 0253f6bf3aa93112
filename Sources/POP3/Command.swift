/// POP3 command keywords this server knows (RFC 1939, 2449, 2595, 5034, and RFC 1725's `LAST`,
/// which exists only with `pop3_enable_last`: `Session.handleLine` treats it as unknown otherwise).
public enum CommandKeyword: UInt8, Sendable, CaseIterable {
    case user, pass, apop, stat, list, retr, dele, noop, rset, quit, top, uidl, capa, stls, auth, last

    /// Keywords are 3 or 4 letters (RFC 1939 §3), matched case-insensitively by
    /// folding ASCII letters to upper case and packing them into one integer,
    /// so parsing a keyword allocates nothing.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> CommandKeyword? {
        guard bytes.count == 3 || bytes.count == 4 else { return nil }
        var packed: UInt32 = 0
        for byte in bytes {
            let upper: UInt8
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"): upper = byte - 0x20
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): upper = byte
            default: return nil
            }
            packed = packed << 8 | UInt32(upper)
        }
        switch packed {
        case pack("USER"): return .user
        case pack("PASS"): return .pass
        case pack("APOP"): return .apop
        case pack("STAT"): return .stat
        case pack("LIST"): return .list
        case pack("RETR"): return .retr
        case pack("DELE"): return .dele
        case pack("NOOP"): return .noop
        case pack("RSET"): return .rset
        case pack("QUIT"): return .quit
        case pack("TOP"): return .top
        case pack("UIDL"): return .uidl
        case pack("CAPA"): return .capa
        case pack("STLS"): return .stls
        case pack("AUTH"): return .auth
        case pack("LAST"): return .last
        default: return nil
        }
    }

    private static func pack(_ text: StaticString) -> UInt32 {
        var packed: UInt32 = 0
        text.withUTF8Buffer { for byte in $0 { packed = packed << 8 | UInt32(byte) } }
        return packed
    }

    /// The commands valid in each phase: the dispatch table of ARCHITECTURE.md convention 5.
    /// A keyword outside its phase's table gets `-ERR` and counts as a bad command.
    static let authorizationTable: CommandKeywordSet = [.user, .pass, .apop, .quit, .capa, .stls, .auth]
    /// `.last` is here, but reaches its table only when the session's `lastEnabled` is set.
    static let transactionTable: CommandKeywordSet = [
        .stat, .list, .retr, .dele, .noop, .rset, .quit, .top, .uidl, .capa, .last,
    ]
}

/// A set of command keywords as one bit per keyword (bit `rawValue`): `contains` is a shift
/// and a mask, where a `Set` hashed the keyword on every command (issue 17).
struct CommandKeywordSet: Equatable, Sendable, ExpressibleByArrayLiteral {
    /// Bit `k.rawValue` set for each keyword `k` in the set. 32 bits: `CommandKeyword` has
    /// 16 cases (`CommandTableTests` checks that every raw value fits).
    let bits: UInt32

    init(arrayLiteral keywords: CommandKeyword...) {
        var bits: UInt32 = 0
        for keyword in keywords { bits |= Self.bit(keyword) }
        self.bits = bits
    }

    @inline(__always)
    func contains(_ keyword: CommandKeyword) -> Bool { bits & Self.bit(keyword) != 0 }

    @inline(__always)
    private static func bit(_ keyword: CommandKeyword) -> UInt32 {
        // `&<<` masks the shift to 0...31: a raw value of 32 or more would alias, not trap;
        // the unit test keeps every raw value below 32.
        1 &<< UInt32(keyword.rawValue)
    }
}

/// Up to `maxArguments` space-separated arguments of a command line, as ranges.
struct CommandArguments {
    /// RFC 1939 commands take at most two arguments; one more slot lets us detect extras.
    static let maxArguments = 3
    var count = 0
    var first = 0..<0
    var second = 0..<0
    var tooMany = false
    /// Everything after the keyword and its single space (PASS: spaces belong to the password).
    var rest = 0..<0

    init(_ line: UnsafeRawBufferPointer, after keywordEnd: Int) {
        if keywordEnd < line.count { rest = (keywordEnd + 1)..<line.count }
        var index = keywordEnd
        while index < line.count {
            while index < line.count && line[index] == 0x20 { index += 1 }
            if index == line.count { break }
            let start = index
            while index < line.count && line[index] != 0x20 { index += 1 }
            switch count {
            case 0: first = start..<index
            case 1: second = start..<index
            default: tooMany = true
            }
            count += 1
        }
    }
}

/// Strict decimal argument parsing (RFC 1939 message numbers and line counts).
enum DecimalArgument {
    /// Ten digits hold every message number and line count we could honour and
    /// cannot overflow Int.
    static let maxDigits = 10

    /// Digits only: no sign, no spaces, 1...maxDigits of them.
    static func parse(_ line: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= maxDigits else { return nil }
        var value = 0
        for index in range {
            let byte = line[index]
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        return value
    }
}
