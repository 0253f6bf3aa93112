/// Streaming multi-line encoder for RETR and TOP (RFC 1939 §3, §7).
///
/// Feed the message file's bytes in any chunking: bare LF becomes CRLF, a line
/// starting with `.` is dot-stuffed, a last line without newline gets CRLF, and
/// `finish` writes the `.` CRLF terminator. Lines are copied segment by segment
/// between LFs found with a word-at-a-time scan, not byte by byte.
public struct MessageEncoder: Sendable {
    /// TOP's line count (nil = RETR: the whole message).
    public let bodyLines: Int?
    /// TOP has everything it needs; the glue can stop reading the file.
    public private(set) var isComplete = false
    /// Octets written excluding dot-stuffing and terminator: equals the LIST
    /// size of the message once a RETR is finished (RFC 1939 §5 exact size).
    public private(set) var contentOctets = 0

    private var atLineStart = true
    private var lastWasCR = false
    /// Bytes in the current line so far, for recognising the header/body blank line.
    private var lineLength = 0
    private var inBody = false
    private var bodyLinesSent = 0
    private var finished = false

    public init(bodyLines: Int?) {
        self.bodyLines = bodyLines.map { max(0, $0) }
    }

    /// Encodes the next chunk of the raw message.
    public mutating func encode(_ chunk: UnsafeRawBufferPointer, out: inout some ReplySink) {
        var index = 0
        let count = chunk.count
        while index < count && !isComplete {
            if atLineStart && chunk[index] == UInt8(ascii: ".") {
                out.write(".")  // RFC 1939 §3 byte-stuffing
            }
            atLineStart = false
            guard let lf = ByteScan.firstIndex(of: 0x0A, in: chunk, from: index) else {
                out.write(UnsafeRawBufferPointer(rebasing: chunk[index..<count]))
                contentOctets += count - index
                lineLength += count - index
                lastWasCR = chunk[count - 1] == 0x0D
                return
            }
            if lf > index {
                out.write(UnsafeRawBufferPointer(rebasing: chunk[index..<lf]))
                contentOctets += lf - index
                lineLength += lf - index
                lastWasCR = chunk[lf - 1] == 0x0D
            }
            if lastWasCR {
                out.write("\n")
                contentOctets += 1
            } else {
                out.write("\r\n")
                contentOctets += 2
            }
            endLine()
            index = lf + 1
        }
    }

    /// Ends the line just written and counts it for TOP.
    private mutating func endLine() {
        let blank = lineLength == 0 || (lineLength == 1 && lastWasCR)
        atLineStart = true
        lastWasCR = false
        lineLength = 0
        guard let limit = bodyLines else { return }
        if inBody {
            bodyLinesSent += 1
            if bodyLinesSent >= limit { isComplete = true }
        } else if blank {
            // RFC 1939 §7 TOP: the headers, the blank line, then `limit` body lines.
            inBody = true
            if limit == 0 { isComplete = true }
        }
    }

    /// Ends an unterminated last line and writes the terminator (once).
    public mutating func finish(out: inout some ReplySink) {
        guard !finished else { return }
        finished = true
        if !atLineStart {
            if lastWasCR {
                out.write("\n")
                contentOctets += 1
            } else {
                out.write("\r\n")
                contentOctets += 2
            }
            atLineStart = true
        }
        isComplete = true
        out.write(".\r\n")
    }
}
