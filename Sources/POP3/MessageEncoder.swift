/// Streaming multi-line encoder for RETR and TOP (RFC 1939 §3, §7).
///
/// Feed the message file's bytes in any chunking. The octets it sends are the
/// server's one definition of a message on the wire (`wire size` below):
///
/// - a line ends at CRLF, at a bare LF, or at a bare CR (a CR not followed by LF,
///   as in classic Mac files); every line end is sent as CRLF;
/// - a last line without a line end is ended with CRLF; an empty file sends no line;
/// - a line starting with `.` is dot-stuffed (RFC 1939 §3), and `finish` writes
///   the `.` CRLF terminator.
///
/// The wire size (what STAT and LIST announce) is the octets sent minus the
/// stuffing dots and the terminator: `octets + bare CRs + bare LFs`, plus 2 for
/// an unterminated last line. `Maildrop`'s size counter (`CRLFSizeCounter`)
/// computes the same number from the file; the two modules may not import each
/// other (ARCHITECTURE.md), so `Tests/StorageProtocolTests` checks, on random messages
/// and random chunkings, that the counter equals what this encoder sends.
///
/// Why a bare CR ends a line rather than passing through as content: RFC 5322
/// §2.3 allows CR and LF only as a CRLF pair; a client that splits lines at a
/// bare CR would see lines the server never dot-stuffed (`\r.\r\n` would read as
/// the end of the message). Sending only stuffed CRLF lines gives every client
/// the same lines, and TOP counts the lines the client sees.
///
/// `pop3_client_workarounds` (`ClientWorkarounds`) change what is sent: `outlook-no-nuls`
/// sends each NUL as 0x80 (same length), `oe-ns-eoh` ends a message that has no empty line
/// (no header end) with one more CRLF, which the wire size then counts too; the counter
/// mirrors it (`WireSizeRule.addsMissingHeaderEnd`).
///
/// Line ends are found with a word-at-a-time scan, and each line is copied once into the
/// sink's free space with its CRLF and stuffing dot stored inline (`encode`); nothing is
/// allocated. RETR without workarounds runs one copy loop over the whole chunk
/// (`encodeRETR`); TOP and the workarounds go line by line (`encodeLine`).
public struct MessageEncoder: Sendable {
    /// TOP's line count (nil = RETR: the whole message).
    public let bodyLines: Int?
    /// TOP has everything it needs; the glue can stop reading the file.
    public private(set) var isComplete = false
    /// Octets written excluding dot-stuffing and terminator: equals the LIST
    /// size of the message once a RETR is finished (RFC 1939 §5 exact size).
    public private(set) var contentOctets = 0

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
    /// `pop3_client_workarounds` applied to the octets sent (`outlook-no-nuls`, `oe-ns-eoh`).
    public let workarounds: ClientWorkarounds
    /// RETR with no workaround: `encodeRETR`'s one loop over the chunk. It keeps no
    /// `lineLength` or `sawEmptyLine`: only TOP and `oe-ns-eoh` read them.
    private let isPlainRETR: Bool

    /// An encoder for RETR (`bodyLines` nil) or TOP n (`bodyLines` n, a negative n taken as 0:
    /// the header and its blank line only, RFC 1939 §7).
    public init(bodyLines: Int?, workarounds: ClientWorkarounds = []) {
        self.bodyLines = bodyLines.map { max(0, $0) }
        self.workarounds = workarounds
        isPlainRETR = bodyLines == nil && workarounds.isEmpty
    }

    /// Writes message content (no line ends), NULs as 0x80 under `outlook-no-nuls`: one
    /// octet for one, so the wire size is unchanged; no allocation (the 0x80 is a stack byte).
    @inline(__always)
    private func writeContent(_ segment: UnsafeRawBufferPointer, out: inout some ReplySink) {
        guard workarounds.contains(.outlookNoNuls) else { return out.write(segment) }
        var start = 0
        while let nul = ByteScan.firstIndex(of: 0, in: segment, from: start) {
            if nul > start { out.write(UnsafeRawBufferPointer(rebasing: segment[start..<nul])) }
            var replacement: UInt8 = 0x80
            withUnsafeBytes(of: &replacement) { out.write($0) }
            start = nul + 1
        }
        if start < segment.count { out.write(UnsafeRawBufferPointer(rebasing: segment[start...])) }
    }

    /// Encodes the next chunk of the raw message.
    ///
    /// Each line (up to the next CR or LF, or the chunk's end) is copied once into the sink's
    /// `freeSpace()`, with its stuffing dot and its CRLF stored inline; a line that does not
    /// fit the space left (the end of an output chunk, a sink that lends none, a line longer
    /// than a chunk) goes through `write(_:)` piece by piece, which moves on to new space. Both
    /// paths send the same octets; every line makes progress, whatever the space's size
    /// (a 1-octet tail included). RETR without workarounds copies in 16-octet steps across
    /// line ends (`encodeRETR`) and falls back to this line-by-line path (`encodeLine`) only
    /// where a step does not fit; the octets sent are the same.
    public mutating func encode(_ chunk: UnsafeRawBufferPointer, out: inout some ReplySink) {
        let count = chunk.count
        guard count > 0, let base = chunk.baseAddress else { return }
        var index = 0
        if skipLF {
            skipLF = false
            if base.load(as: UInt8.self) == 0x0A { index = 1 }
        }
        // Fetched when a line needs it (never for a chunk that is only a CRLF's LF), kept
        // while lines fit, dropped after a line went through `write(_:)`.
        var space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        var used = 0
        if isPlainRETR {
            encodeRETR(base: base, count: count, index: index, space: &space, used: &used, out: &out)
        } else {
            while index < count && !isComplete {
                guard encodeLine(base: base, count: count, index: &index, space: &space, used: &used, out: &out)
                else { break }
            }
        }
        out.commitSpace(used)
    }

    /// Encodes the line (or the rest of it) starting at `base[index]`, up to its line end or the
    /// chunk's end, into `space` (fetching new space when it is used up) or through `write(_:)`.
    /// Returns false when the chunk ended inside the line, else moves `index` past the line end.
    @inline(__always)
    private mutating func encodeLine(base: UnsafeRawPointer, count: Int, index: inout Int,
                                     space: inout UnsafeMutableRawBufferPointer, used: inout Int,
                                     out: inout some ReplySink) -> Bool {
        if used == space.count {
            out.commitSpace(used)
            used = 0
            space = out.freeSpace()
        }
        let stuff = atLineStart && base.load(fromByteOffset: index, as: UInt8.self) == UInt8(ascii: ".")
        atLineStart = false
        let stuffed = stuff ? 1 : 0
        var found: Int? = nil
        var length = 0
        // The fast path: the line, its stuffing dot and its CRLF fit the space left.
        if let spaceBase = space.baseAddress,
           let line = ByteScan.copyLine(from: base + index, count: count - index, to: spaceBase + used + stuffed,
                                        room: space.count - used - stuffed - 2) {
            length = line.length
            if stuff { (spaceBase + used).storeBytes(of: UInt8(ascii: "."), as: UInt8.self) }  // RFC 1939 §3 byte-stuffing
            let content = spaceBase + used + stuffed
            if workarounds.contains(.outlookNoNuls) {
                replaceNULs(UnsafeMutableRawBufferPointer(start: content, count: length))
            }
            used += stuffed + length
            if line.ended {
                found = index + length
                content.storeBytes(of: UInt16(0x0A0D).littleEndian, toByteOffset: length, as: UInt16.self)  // CR LF
                used += 2
            }
        } else {
            let chunk = UnsafeRawBufferPointer(start: base, count: count)
            found = ByteScan.firstLineEnd(in: chunk, from: index)
            length = (found ?? count) - index
            out.commitSpace(used)
            used = 0
            if stuff { out.write(".") }  // RFC 1939 §3 byte-stuffing
            if length > 0 { writeContent(UnsafeRawBufferPointer(start: base + index, count: length), out: &out) }
            if found != nil { out.write("\r\n") }
            space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        }
        contentOctets &+= length
        lineLength &+= length
        guard let end = found else { return false }
        contentOctets &+= 2
        endLine()
        index = end + 1
        if base.load(fromByteOffset: end, as: UInt8.self) == 0x0D {
            // CRLF is one line end; a CR at the chunk's end decides with the next chunk.
            if index < count {
                if base.load(fromByteOffset: index, as: UInt8.self) == 0x0A { index += 1 }
            } else {
                skipLF = true
            }
        }
        return true
    }

    /// NULs as 0x80 in octets already copied out (`outlook-no-nuls`, same length).
    private func replaceNULs(_ bytes: UnsafeMutableRawBufferPointer) {
        var start = 0
        while let nul = ByteScan.firstIndex(of: 0, in: UnsafeRawBufferPointer(bytes), from: start) {
            bytes[nul] = 0x80
            start = nul + 1
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
    public mutating func finish(out: inout some ReplySink) {
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

extension MessageEncoder {
    /// Octets of lent space `encodeRETR`'s copy loop needs before each 16-octet step: the 16
    /// octets it stores (offsets 0...15), or a line end at offset 15 whose CR LF goes to
    /// offsets 15 and 16, followed by the next line's stuffing dot at offset 17.
    static let retrStepRoom = 18

    /// Octets of the chunk a step reads (two unaligned 64-bit loads).
    static let retrStep = 16

    /// RETR without workarounds: one loop over the chunk that copies 16 octets per step into
    /// the lent space (two unaligned 64-bit loads and stores) and stops only at a CR or LF,
    /// where it stores CR LF and, when the next line starts with `.`, the stuffing dot
    /// (RFC 1939 §3). The octets a step copies past a line end are garbage in the lent space
    /// that the next step overwrites or `commitSpace` leaves uncounted; the chunk is never
    /// read past its end (it is a piece of the file's read buffer). `contentOctets` is counted
    /// once per run of the loop, from the octets stored minus the stuffing dots.
    ///
    /// The CR-or-LF test is `ByteScan.firstLineEnd`'s, on scalar words: the optimiser turns the
    /// step into SSE2 operations; a cheaper "any octet below 0x0E" test (with an exact
    /// re-check for a TAB or NUL) stayed scalar and cost more instructions per line.
    ///
    /// Where the loop cannot take a step (fewer than `retrStep` octets left in the chunk,
    /// fewer than `retrStepRoom` left in the lent space, a sink that lends none), one line goes
    /// through `encodeLine`, the general path, which works with any space and moves on to new
    /// space; then the loop resumes. Same octets as the general path
    /// (`MessageEncoderDifferentialTests`).
    @inline(__always)
    private mutating func encodeRETR(base: UnsafeRawPointer, count: Int, index start: Int,
                                     space: inout UnsafeMutableRawBufferPointer, used: inout Int,
                                     out: inout some ReplySink) {
        let dot = UInt8(ascii: ".")
        let sourceStop = count &- Self.retrStep  // the last chunk offset a step may start at
        var index = start
        while index < count {
            if used == space.count {
                out.commitSpace(used)
                used = 0
                space = out.freeSpace()
            }
            if let spaceBase = space.baseAddress, space.count &- used >= Self.retrStepRoom, index <= sourceStop {
                // The octet at chunk offset `index` goes to space offset `index + shift`.
                var shift = used &- index
                var dots = 0
                if atLineStart {
                    atLineStart = false
                    if base.load(fromByteOffset: index, as: UInt8.self) == dot {
                        spaceBase.storeBytes(of: dot, toByteOffset: used, as: UInt8.self)  // RFC 1939 §3 byte-stuffing
                        shift &+= 1
                        dots = 1
                    }
                }
                let destinationStop = space.count &- Self.retrStepRoom  // the last space offset a step may start at
                var stop = min(sourceStop, destinationStop &- shift)
                while index <= stop {
                    let word1 = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                    let word2 = base.loadUnaligned(fromByteOffset: index &+ 8, as: UInt64.self)
                    spaceBase.storeBytes(of: word1, toByteOffset: index &+ shift, as: UInt64.self)
                    spaceBase.storeBytes(of: word2, toByteOffset: index &+ shift &+ 8, as: UInt64.self)
                    let found1 = ByteScan.lineEndLanes(word1), found2 = ByteScan.lineEndLanes(word2)
                    if found1 | found2 == 0 {
                        index &+= Self.retrStep
                        continue
                    }
                    let lane = found1 != 0 ? ByteScan.firstLane(found1) : 8 &+ ByteScan.firstLane(found2)
                    let ending = base.load(fromByteOffset: index &+ lane, as: UInt8.self)
                    spaceBase.storeBytes(of: UInt16(0x0A0D).littleEndian, toByteOffset: index &+ shift &+ lane,
                                         as: UInt16.self)  // CR LF for the CR, LF or CRLF
                    index &+= lane &+ 1
                    shift &+= 1
                    if ending == 0x0D {
                        // CRLF is one line end; a CR at the chunk's end decides with the next chunk.
                        if index < count {
                            if base.load(fromByteOffset: index, as: UInt8.self) == 0x0A {
                                index &+= 1
                                shift &-= 1
                            }
                        } else {
                            skipLF = true
                        }
                    }
                    if index == count {
                        atLineStart = true
                        break
                    }
                    if base.load(fromByteOffset: index, as: UInt8.self) == dot {
                        spaceBase.storeBytes(of: dot, toByteOffset: index &+ shift, as: UInt8.self)  // RFC 1939 §3
                        shift &+= 1
                        dots &+= 1
                    }
                    stop = min(sourceStop, destinationStop &- shift)
                }
                let stored = index &+ shift
                contentOctets &+= (stored &- used) &- dots
                used = stored
                if index == count { break }
            }
            guard encodeLine(base: base, count: count, index: &index, space: &space, used: &used, out: &out)
            else { break }
        }
    }
}
