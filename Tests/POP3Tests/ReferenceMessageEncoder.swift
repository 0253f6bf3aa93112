import POP3

// The RETR/TOP encoder of `main` before issue 17 (commit 6de43d2,
// Sources/POP3/MessageEncoder.swift and the two scans of Sources/POP3/ByteScan.swift it
// used), kept verbatim except for the names: the reference `MessageEncoderDifferentialTests`
// compares today's encoder with, octet for octet. It writes every line through
// `ReplySink.write(_:)` (one call for the content, one for CRLF), so it never touches a
// sink's `freeSpace()`. Do not "improve" it: its value is being the old behaviour.

/// The encoder of `main` at 6de43d2 (see the file's header).
struct ReferenceMessageEncoder: Sendable {
    /// TOP's line count (nil = RETR: the whole message).
    let bodyLines: Int?
    /// TOP has everything it needs; the glue can stop reading the file.
    private(set) var isComplete = false
    /// Octets written excluding dot-stuffing and terminator: equals the LIST
    /// size of the message once a RETR is finished (RFC 1939 §5 exact size).
    private(set) var contentOctets = 0

    private var atLineStart = true
    /// The previous chunk ended with a CR that ended a line: an LF starting the
    /// next chunk is that CR's partner, not a line end of its own.
    private var skipLF = false
    /// Octets in the current line so far (without its line end), for
    /// recognising the header/body blank line.
    private var lineLength = 0
    private var inBody = false
    private var bodyLinesSent = 0
    private var finished = false
    /// An empty line was sent: the header has its end (`oe-ns-eoh`).
    private var sawEmptyLine = false
    let workarounds: ClientWorkarounds

    init(bodyLines: Int?, workarounds: ClientWorkarounds = []) {
        self.bodyLines = bodyLines.map { max(0, $0) }
        self.workarounds = workarounds
    }

    /// Writes message content (no line ends), NULs as 0x80 under `outlook-no-nuls`: one
    /// octet for one, so the wire size is unchanged; no allocation (the 0x80 is a stack byte).
    @inline(__always)
    private func writeContent(_ segment: UnsafeRawBufferPointer, out: inout some ReplySink) {
        guard workarounds.contains(.outlookNoNuls) else { return out.write(segment) }
        var start = 0
        while let nul = ReferenceByteScan.firstIndex(of: 0, in: segment, from: start) {
            if nul > start { out.write(UnsafeRawBufferPointer(rebasing: segment[start..<nul])) }
            var replacement: UInt8 = 0x80
            withUnsafeBytes(of: &replacement) { out.write($0) }
            start = nul + 1
        }
        if start < segment.count { out.write(UnsafeRawBufferPointer(rebasing: segment[start...])) }
    }

    /// Encodes the next chunk of the raw message.
    mutating func encode(_ chunk: UnsafeRawBufferPointer, out: inout some ReplySink) {
        var index = 0
        let count = chunk.count
        if skipLF && count > 0 {
            skipLF = false
            if chunk[0] == 0x0A { index = 1 }
        }
        while index < count && !isComplete {
            if atLineStart && chunk[index] == UInt8(ascii: ".") {
                out.write(".")  // RFC 1939 §3 byte-stuffing
            }
            atLineStart = false
            guard let end = ReferenceByteScan.firstLineEnd(in: chunk, from: index) else {
                writeContent(UnsafeRawBufferPointer(rebasing: chunk[index..<count]), out: &out)
                contentOctets &+= count - index
                lineLength &+= count - index
                return
            }
            if end > index {
                writeContent(UnsafeRawBufferPointer(rebasing: chunk[index..<end]), out: &out)
                contentOctets &+= end - index
                lineLength &+= end - index
            }
            out.write("\r\n")
            contentOctets &+= 2
            endLine()
            index = end + 1
            if chunk[end] == 0x0D {
                // CRLF is one line end; a CR at the chunk's end decides with the next chunk.
                if index < count {
                    if chunk[index] == 0x0A { index += 1 }
                } else {
                    skipLF = true
                }
            }
        }
    }

    /// Ends the line just written and counts it for TOP.
    private mutating func endLine() {
        let blank = lineLength == 0
        atLineStart = true
        lineLength = 0
        if blank { sawEmptyLine = true }
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

    /// Ends an unterminated last line, adds the header end `oe-ns-eoh` asks for when no
    /// empty line was sent (RETR, or a TOP that sent the whole message), and writes the
    /// terminator (once).
    mutating func finish(out: inout some ReplySink) {
        guard !finished else { return }
        finished = true
        if !atLineStart {
            out.write("\r\n")
            contentOctets &+= 2
            atLineStart = true
        }
        if workarounds.contains(.oeNsEoh) && !sawEmptyLine {
            out.write("\r\n")
            contentOctets &+= 2
            sawEmptyLine = true
        }
        isComplete = true
        out.write(".\r\n")
    }
}

/// `ByteScan` of `main` at 6de43d2 (the two functions the old encoder used).
enum ReferenceByteScan {
    /// Index of the first `byte` in `buffer[from..<buffer.count]`, or nil.
    @inline(__always)
    static func firstIndex(of byte: UInt8, in buffer: UnsafeRawBufferPointer, from: Int) -> Int? {
        let count = buffer.count
        guard from < count, let base = buffer.baseAddress else { return nil }
        var index = from
        let pattern = UInt64(byte) &* 0x0101_0101_0101_0101
        while index + 8 <= count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ pattern
            let found = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
            if found != 0 {
                // Little-endian on every Linux target we build for: lowest set bit = first byte.
                return index + found.littleEndian.trailingZeroBitCount / 8
            }
            index += 8
        }
        while index < count {
            if base.load(fromByteOffset: index, as: UInt8.self) == byte { return index }
            index += 1
        }
        return nil
    }

    /// Index of the first CR or LF in `buffer[from..<buffer.count]`, or nil: the
    /// next line end under `MessageEncoder`'s rule (CRLF, bare LF or bare CR).
    ///
    /// Both "has zero byte" masks are exact at their lowest set bit (a false
    /// positive needs a borrow from a true zero byte below it), so the lowest bit
    /// of their union is the first CR or LF.
    @inline(__always)
    static func firstLineEnd(in buffer: UnsafeRawBufferPointer, from: Int) -> Int? {
        let count = buffer.count
        guard from < count, let base = buffer.baseAddress else { return nil }
        var index = from
        let ones: UInt64 = 0x0101_0101_0101_0101
        let high: UInt64 = 0x8080_8080_8080_8080
        let crPattern = 0x0D &* ones
        let lfPattern = 0x0A &* ones
        while index + 8 <= count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let cr = word ^ crPattern
            let lf = word ^ lfPattern
            let found = (((cr &- ones) & ~cr) | ((lf &- ones) & ~lf)) & high
            if found != 0 {
                // Little-endian on every Linux target we build for: lowest set bit = first byte.
                return index + found.littleEndian.trailingZeroBitCount / 8
            }
            index += 8
        }
        while index < count {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            if byte == 0x0D || byte == 0x0A { return index }
            index += 1
        }
        return nil
    }
}
