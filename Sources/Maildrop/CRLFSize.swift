import Glibc

/// Computes the size of a message as RETR sends it before dot-stuffing: its
/// *wire size*, the number STAT and LIST announce (RFC 1939 §5: "exact size").
///
/// The rule (one rule for the whole server; `POP3.MessageEncoder` applies it
/// to the octets it sends, and `Tests/StorageProtocolTests` checks on random
/// input that the two agree octet for octet):
///
/// - a line ends at CRLF, at a bare LF, or at a bare CR (a CR not followed by
///   LF: classic Mac files); every line end is sent as CRLF;
/// - a last line without a line end is ended with CRLF; an empty file is empty.
///
/// So the wire size is `octets + bare CRs + bare LFs (+ 2 for an unterminated
/// last line)`, or equivalently `octets + CRs + LFs - 2 * CRLF pairs (+ 2)`.
///
/// Why a bare CR ends a line instead of passing through as content (Dovecot's
/// choice): RFC 5322 §2.3 allows CR and LF only together as CRLF, RFC 1939 §3
/// frames every line with CRLF, and a client that splits lines at a bare CR
/// would otherwise see lines the server never dot-stuffed (`\r.\r\n` would read
/// as the end of the message). Sending only CRLF lines, each stuffed, means every
/// client sees the same lines, and TOP counts them the same way.
///
/// This module may not import `POP3` (ARCHITECTURE.md module table), hence the mirror
/// rather than a call; the counter works over a file on a worker thread, the
/// encoder over the chunks it sends. Resumable across chunks, so a message of
/// any size is counted in bounded memory.
struct CRLFSizeCounter {
    /// Version of the rule above, written into the size cache's header: a cache
    /// computed under an older rule is ignored, never trusted.
    static let ruleVersion = 2

    /// Octets seen plus one per CR and per LF; CRLF pairs are taken off in `total`.
    private(set) var octets = 0
    private var crlfPairs = 0
    private var last: UInt8 = UInt8(ascii: "\n")
    private var sawAny = false
    /// `oe-ns-eoh` (`WireSizeRule.addsMissingHeaderEnd`): a message with no empty line gets
    /// one more CRLF at its end, as `POP3.MessageEncoder` sends it.
    let addsMissingHeaderEnd: Bool
    /// An empty line (a line end at the start of a line) was seen: the header has its end.
    private(set) var sawEmptyLine = false
    /// Where the empty-line scan stands: at the start of a line (file start, after an LF or a
    /// CRLF), right after a CR (a line start, but an LF next is that CR's partner), or inside
    /// a line.
    private var lineState = LineState.start
    private enum LineState { case start, afterCR, inside }

    init(rule: WireSizeRule = WireSizeRule()) {
        addsMissingHeaderEnd = rule.addsMissingHeaderEnd
    }

    mutating func consume(_ chunk: UnsafeRawBufferPointer) {
        guard let base = chunk.baseAddress, chunk.count > 0 else { return }
        // Counted per chunk first (at most 3 x the chunk: cannot overflow), then added with
        // saturation: a sparse file of more than 4 EiB would double past Int.max.
        var added = chunk.count
        var pairs = 0
        // memchr finds the CRs and the LFs; everything between them costs nothing.
        var offset = 0
        while offset < chunk.count {
            guard let hit = memchr(base + offset, 0x0D, chunk.count - offset) else { break }
            added += 1
            offset = base.distance(to: UnsafeRawPointer(hit)) + 1
        }
        offset = 0
        while offset < chunk.count {
            guard let hit = memchr(base + offset, 0x0A, chunk.count - offset) else { break }
            let at = base.distance(to: UnsafeRawPointer(hit))
            let before = at == 0 ? last : chunk[at - 1]
            if before == 0x0D { pairs += 1 }
            added += 1
            offset = at + 1
        }
        if addsMissingHeaderEnd && !sawEmptyLine { scanForEmptyLine(chunk) }
        octets = Self.saturatingAdd(octets, added)
        crlfPairs = Self.saturatingAdd(crlfPairs, pairs)
        last = chunk[chunk.count - 1]
        sawAny = true
    }

    /// Byte by byte, but only until the first empty line, which ends the header of nearly
    /// every message within its first few hundred octets (and only under `oe-ns-eoh`).
    private mutating func scanForEmptyLine(_ chunk: UnsafeRawBufferPointer) {
        for byte in chunk {
            switch (lineState, byte) {
            case (.start, 0x0A), (.start, 0x0D), (.afterCR, 0x0D):
                sawEmptyLine = true  // a line end where a line starts: an empty line
                return
            case (.afterCR, 0x0A), (.inside, 0x0A): lineState = .start
            case (.inside, 0x0D): lineState = .afterCR
            default: lineState = .inside
            }
        }
    }

    static func saturatingAdd(_ a: Int, _ b: Int) -> Int {
        let (r, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : r
    }

    /// The wire size: adds the CRLF that ends an unterminated last line. `Int.max` once the
    /// count saturated (each CRLF pair added 4 to `octets`, so the subtraction cannot go
    /// below zero while it is exact).
    var total: Int {
        guard octets < Int.max else { return Int.max }
        var lines = octets - 2 * crlfPairs
        if sawAny, last != 0x0A, last != 0x0D { lines = Self.saturatingAdd(lines, 2) }
        if addsMissingHeaderEnd && !sawEmptyLine { lines = Self.saturatingAdd(lines, 2) }
        return lines
    }

    /// Reads the file `name` in `dirfd` through `buffer` and returns its CRLF
    /// size; `nil` when the file vanished (renamed or deleted meanwhile) or is no longer a
    /// regular file (a FIFO put in its place is never opened for a blocking read).
    /// `cancellation` is checked before every chunk: `.cancelled` when raised.
    static func measure(
        dirfd: Int32, name: String, path: @autoclosure () -> String, buffer: UnsafeMutableRawBufferPointer,
        cancellation: CancellationFlag? = nil, rule: WireSizeRule = WireSizeRule()
    ) throws(MaildropError) -> Int? {
        let fd: Int32
        switch try Sys.openRegularFile(dirfd, name, path: path()) {
        case .ok(let f): fd = f
        case .missing, .wrongKind: return nil
        }
        defer { Sys.close(fd) }
        var counter = CRLFSizeCounter(rule: rule)
        while true {
            if let cancellation, cancellation.isCancelled { throw .cancelled }
            let n = try Sys.read(fd, buffer, path: path())
            if n == 0 { break }
            counter.consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return counter.total
    }
}
