/// RFC 2449 §8 / RFC 3206 response codes a client acts on.
public enum ResponseCode: Equatable, Sendable {
    /// `[IN-USE]`, `[LOGIN-DELAY]` (RFC 2449 §8.1), `[SYS/TEMP]`, `[SYS/PERM]`, `[AUTH]` (RFC 3206 §4).
    case inUse, loginDelay, sysTemp, sysPerm, auth
    /// Any other code in brackets.
    case other

    init(_ bytes: UnsafeRawBufferPointer) {
        switch String(decoding: bytes, as: UTF8.self).uppercased() {
        case "IN-USE": self = .inUse
        case "LOGIN-DELAY": self = .loginDelay
        case "SYS/TEMP": self = .sysTemp
        case "SYS/PERM": self = .sysPerm
        case "AUTH": self = .auth
        default: self = .other
        }
    }
}

/// What `ReplyParser.next` found.
public enum ReplyEvent: Equatable, Sendable {
    /// No complete line yet: call again with more input (nothing consumed).
    case needMore
    /// `+OK` or `-ERR`; `text` is the text after the status (and after the code),
    /// `code` the bracketed response code if any (RFC 2449 §8).
    case status(ok: Bool, code: ResponseCode?, text: Range<Int>)
    /// A SASL server challenge `+ base64` (RFC 5034 §4): the base64 text.
    case challenge(Range<Int>)
    /// A body line of a multi-line reply, un-stuffed, terminator stripped.
    /// `complete` is false for a piece of a line longer than `maxLineLength`.
    case line(Range<Int>, complete: Bool)
    /// The `.` terminator: `octets` counted as LIST counts them (CRLF included,
    /// stuffing removed), `lines` the number of body lines.
    case end(octets: Int, lines: Int)
    /// A line that is not a POP3 reply; the client should give up on the session.
    case malformed
}

/// Resumable client-side parser of server replies (for pop3bench and tests).
///
/// The caller says whether the reply it awaits is multi-line (it knows its
/// command: RETR, TOP, LIST/UIDL without argument, CAPA, bare AUTH); after a
/// `+OK` status the parser then reads body lines up to the terminator.
public struct ReplyParser: Sendable {
    /// Body lines longer than this are reported in pieces, so a message with
    /// huge lines never makes the client buffer it whole.
    public var maxLineLength: Int
    /// 64 KiB: longer body lines come as `.line(_, complete: false)` pieces.
    public static let defaultMaxLineLength = 64 * 1024

    private var expectMultiLine = false
    private var inBody = false
    private var pieceOfLine = false
    private var octets = 0
    private var lines = 0

    /// A parser that reports body lines over `maxLineLength` octets in pieces.
    public init(maxLineLength: Int = ReplyParser.defaultMaxLineLength) {
        self.maxLineLength = maxLineLength
    }

    /// Call before each command's reply.
    public mutating func expect(multiLine: Bool) {
        expectMultiLine = multiLine
        inBody = false
        pieceOfLine = false
    }

    /// Between a multi-line reply's `+OK` and its `.` terminator.
    public var isInBody: Bool { inBody }

    /// The next event at the front of `input` and how many octets of it were consumed (drop them
    /// before the next call). Status and body lines end at LF, a CR before it stripped; a body line
    /// starting with `.` is un-stuffed (RFC 1939 §3). `.needMore` consumes nothing.
    public mutating func next(_ input: UnsafeRawBufferPointer) -> (ReplyEvent, consumed: Int) {
        guard let lf = ByteScan.firstIndex(of: 0x0A, in: input, from: 0) else {
            if inBody && input.count >= maxLineLength {
                // A piece of a long body line; stuffing only matters at the line start.
                var start = 0
                if !pieceOfLine && input[0] == UInt8(ascii: ".") { start = 1 }
                // Keep a trailing CR: it may be the first half of the CRLF.
                let end = input[input.count - 1] == 0x0D ? input.count - 1 : input.count
                pieceOfLine = true
                octets += end - start
                return (.line(start..<end, complete: false), end)
            }
            return (.needMore, 0)
        }
        var end = lf
        if end > 0 && input[end - 1] == 0x0D { end -= 1 }
        if inBody { return bodyLine(input, end: end, consumed: lf + 1) }
        return (statusLine(UnsafeRawBufferPointer(rebasing: input[0..<end])), lf + 1)
    }

    private mutating func bodyLine(_ input: UnsafeRawBufferPointer, end: Int, consumed: Int) -> (ReplyEvent, consumed: Int) {
        if !pieceOfLine && input[0] == UInt8(ascii: ".") {
            if end == 1 {
                inBody = false
                let event = ReplyEvent.end(octets: octets, lines: lines)
                return (event, consumed)
            }
            octets += end - 1 + 2
            lines += 1
            return (.line(1..<end, complete: true), consumed)
        }
        pieceOfLine = false
        octets += end + 2
        lines += 1
        return (.line(0..<end, complete: true), consumed)
    }

    private mutating func statusLine(_ line: UnsafeRawBufferPointer) -> ReplyEvent {
        let ok: Bool
        var index: Int
        if Self.hasPrefix(line, "+OK") {
            ok = true
            index = 3
        } else if Self.hasPrefix(line, "-ERR") {
            ok = false
            index = 4
        } else if line.count >= 1 && line[0] == UInt8(ascii: "+") && (line.count == 1 || line[1] == 0x20) {
            return .challenge(min(2, line.count)..<line.count)
        } else {
            return .malformed
        }
        guard index == line.count || line[index] == 0x20 else { return .malformed }
        if index < line.count { index += 1 }
        var code: ResponseCode?
        if index < line.count && line[index] == UInt8(ascii: "["),
            let close = line[index...].firstIndex(of: UInt8(ascii: "]"))
        {
            // RFC 2449 §8: hierarchical codes ("SYS/TEMP"); the whole text names it.
            code = ResponseCode(UnsafeRawBufferPointer(rebasing: line[(index + 1)..<close]))
            index = close + 1
            if index < line.count && line[index] == 0x20 { index += 1 }
        }
        if ok && expectMultiLine {
            inBody = true
            octets = 0
            lines = 0
            expectMultiLine = false
        }
        return .status(ok: ok, code: code, text: index..<line.count)
    }

    private static func hasPrefix(_ line: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        prefix.withUTF8Buffer { bytes in
            guard line.count >= bytes.count else { return false }
            for index in 0..<bytes.count where line[index] != bytes[index] { return false }
            return true
        }
    }
}

/// Client-side command builder (pop3bench): writes `KEYWORD [args] CRLF`.
public enum CommandWriter {
    /// `KEYWORD CRLF` (`QUIT`, `STAT`, `CAPA` ...).
    public static func write(_ keyword: StaticString, out: inout some ReplySink) {
        out.write(keyword)
        out.write("\r\n")
    }

    /// `KEYWORD n CRLF` (`RETR 1`, `DELE 3`), `number` in decimal.
    public static func write(_ keyword: StaticString, _ number: Int, out: inout some ReplySink) {
        out.write(keyword)
        out.write(" ")
        out.write(decimal: number)
        out.write("\r\n")
    }

    /// `KEYWORD n m CRLF` (`TOP 1 10`).
    public static func write(_ keyword: StaticString, _ first: Int, _ second: Int, out: inout some ReplySink) {
        out.write(keyword)
        out.write(" ")
        out.write(decimal: first)
        out.write(" ")
        out.write(decimal: second)
        out.write("\r\n")
    }

    /// `KEYWORD argument CRLF` (`USER alice`, `AUTH PLAIN base64`); `argument` is sent as is, so it
    /// must hold no CR or LF.
    public static func write(_ keyword: StaticString, _ argument: String, out: inout some ReplySink) {
        out.write(keyword)
        out.write(" ")
        out.write(string: argument)
        out.write("\r\n")
    }
}
