/// What `LineParser.next` found at the front of the input.
public enum LineEvent: Equatable, Sendable {
    /// A complete line: its bytes within the input, CRLF or bare LF stripped.
    case line(Range<Int>)
    /// A line passed `maxLineLength`; reported once, the rest of it is discarded.
    case tooLong
    /// No complete line yet; keep the unconsumed bytes and read more.
    case needMore
}

/// Splits the connection's input into lines: pure, resumable and bounded
/// (ARCHITECTURE.md convention 4).
///
/// The glue passes its buffered, not yet consumed input each time and drops
/// `consumed` bytes from the front afterwards. Lines end in CRLF; a bare LF is
/// accepted too (RFC 1939 §3 says CRLF, but lenient clients and `telnet` send
/// LF). A line longer than `maxLineLength` is never buffered whole: after
/// `.tooLong` the parser consumes everything up to the line's LF as it arrives.
public struct LineParser: Sendable {
    /// Longest command line, terminator included: RFC 2449 §4 limits commands to
    /// 255 octets.
    public static let maxCommandLength = 255
    /// Longest SASL client response line, terminator included. RFC 5034 §4 lets
    /// continuation responses be of arbitrary length (only the initial response
    /// on the AUTH line keeps the 255-octet limit); 8192 octets hold a SCRAM
    /// client-final message or a PLAIN response with a long password many times
    /// over while keeping pre-auth memory small.
    public static let maxSASLResponseLength = 8192

    /// The limit on the current line, terminator included. The glue sets it from
    /// `Session.maxLineLength` before each call.
    public var maxLineLength: Int
    /// Bytes at the front of the input already searched for LF (not rescanned).
    private var scanned = 0
    /// Inside an over-long line: consume until its LF.
    private var discarding = false

    /// A parser limited to `maxLineLength` octets per line, terminator included (default: RFC 2449
    /// §4's 255 for commands).
    public init(maxLineLength: Int = LineParser.maxCommandLength) {
        self.maxLineLength = maxLineLength
    }

    /// Returns the next event and how many bytes of `input` it consumed.
    public mutating func next(_ input: UnsafeRawBufferPointer) -> (LineEvent, consumed: Int) {
        var start = 0
        if discarding {
            guard let lf = ByteScan.firstIndex(of: 0x0A, in: input, from: 0) else {
                return (.needMore, input.count)
            }
            discarding = false
            scanned = 0
            start = lf + 1
        }
        let searchFrom = max(start, start + scanned)
        if let lf = ByteScan.firstIndex(of: 0x0A, in: input, from: searchFrom) {
            scanned = 0
            if lf + 1 - start > maxLineLength {
                return (.tooLong, lf + 1)
            }
            var end = lf
            if end > start && input[end - 1] == 0x0D { end -= 1 }
            return (.line(start..<end), lf + 1)
        }
        let pending = input.count - start
        if pending >= maxLineLength {
            // Even a CR LF arriving next would make it too long: discard from here on.
            discarding = true
            scanned = 0
            return (.tooLong, input.count)
        }
        scanned = pending
        return (.needMore, start)
    }

    /// Forgets partial state (after STLS the glue drops buffered plaintext, RFC 2595 §4).
    public mutating func reset() {
        scanned = 0
        discarding = false
    }
}
