/// The head of one HTTP/1.x request, reduced to what the metrics endpoint decides on.
public struct HTTPRequestHead: Equatable, Sendable {
    /// The request method; only GET and HEAD are served.
    public enum Method: Equatable, Sendable {
        /// `GET` and `HEAD`, exactly so (methods are case-sensitive).
        case get, head
        /// Any other well-formed method (RFC 9110 §9: methods are case-sensitive tokens).
        case other
    }

    /// The request target, as far as the endpoint cares.
    public enum Target: Equatable, Sendable {
        /// The path is exactly `/metrics` (a query is ignored), in origin-form or absolute-form.
        case metrics
        /// Any other path.
        case other
    }

    /// GET, HEAD or another method.
    public var method: Method
    /// `/metrics` or anything else.
    public var target: Target
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 and any later 1.x (RFC 9110 §2.5: a 1.x recipient
    /// treats a higher minor version as the highest it implements).
    public var minorVersion: Int
    /// The connection stays open after the response: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive` (RFC 9112 §9.3).
    public var keepAlive: Bool

    /// A head from its parts (tests).
    public init(method: Method, target: Target, minorVersion: Int, keepAlive: Bool) {
        self.method = method
        self.target = target
        self.minorVersion = minorVersion
        self.keepAlive = keepAlive
    }
}

/// A pure, resumable, bounded parser of HTTP/1.x request heads (RFC 9112 §2-§6), for the
/// metrics endpoint: request line, header fields up to the empty line, nothing else. It
/// allocates nothing.
///
/// Feed it the unconsumed input; on `.needMore` call it again with the same octets plus what
/// arrived (it resumes after the last complete line it checked). `.request` says how many
/// octets the head took; the parser is then ready for the next (pipelined) request, which
/// starts right after them. Every `.failed` means: answer with its status and close, because
/// the framing of whatever follows cannot be trusted.
///
/// Strict where RFC 9112 lets a server choose, because the only legitimate clients are
/// Prometheus, curl and their like: single spaces in the request line, no whitespace before a
/// field's colon (§5.1 requires a 400), no obsolete line folding (§5.2), no bare CR (§2.2),
/// no control octets, exactly one `Host` in HTTP/1.1 (§3.2). A bare LF ends a line (§2.2
/// allows it) and empty lines before the request line are skipped (§2.2 asks for at least
/// one). A request with content (`Content-Length` above 0, or any `Transfer-Encoding`) is
/// refused: the endpoint has no use for one and reading it would only be a way to hold the
/// connection.
public struct HTTPRequestParser: Sendable {
    /// Why a head was refused, with the status the endpoint answers before it closes.
    public enum Failure: Equatable, Sendable {
        /// Not HTTP/1.x syntax: 400.
        case malformed
        /// No end of the head within the limit: 431.
        case headTooLarge
        /// HTTP with a major version other than 1: 505.
        case versionNotSupported
        /// The request announces content: 413 (400 when `Content-Length` and
        /// `Transfer-Encoding` are both present, RFC 9112 §6.3, which is `.malformed`).
        case contentNotAccepted
    }

    /// What `parse(_:maxHeadBytes:)` found: `.needMore` (call again with more octets), a complete
    /// head, or a refusal.
    public enum Result: Equatable, Sendable {
        /// No complete head yet: call again with the same octets and more.
        case needMore
        /// A complete head of `consumed` octets (leading empty lines included).
        case request(HTTPRequestHead, consumed: Int)
        /// Refused: answer with the failure's status and close.
        case failed(Failure)
    }

    /// Offset just past the last complete line checked (0: nothing checked yet).
    private var checked = 0
    /// Octets of the line after `checked` already searched for its LF and found valid so far,
    /// up to this offset: a head sent an octet at a time is scanned once, not once per octet.
    private var scanned = 0
    /// Set once the request line has been checked.
    private var method = HTTPRequestHead.Method.other
    private var target = HTTPRequestHead.Target.other
    private var minorVersion = -1
    private var hosts = 0
    private var connectionClose = false
    private var connectionKeepAlive = false
    private var contentLength = false
    private var transferEncoding = false
    private var contentNotEmpty = false

    /// A parser at the start of a request.
    public init() {}

    /// Parses `bytes` (the unconsumed input, starting at the first octet of a request) and
    /// looks at no more than `maxHeadBytes` of them.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer, maxHeadBytes: Int) -> Result {
        if max(checked, scanned) > bytes.count { self = HTTPRequestParser() }  // not the same input: start over
        let limit = min(bytes.count, max(0, maxHeadBytes))
        while checked < limit {
            let from = max(checked, scanned)
            guard let lf = Self.firstLF(bytes, from: from, to: limit) else {
                if Self.partialLineIsHopeless(bytes, from: from, to: limit, requestLine: minorVersion < 0) {
                    return fail(.malformed)
                }
                // The last octet is looked at again: a CR there is fine only if LF follows.
                scanned = max(checked, limit - 1)
                break
            }
            var end = lf
            if end > checked && bytes[end - 1] == 13 { end -= 1 }  // CRLF; a bare LF also ends a line
            let lineStart = checked
            checked = lf + 1
            if minorVersion < 0 {
                if end == lineStart { continue }  // empty lines before the request line (§2.2)
                if let failure = requestLine(bytes, lineStart, end) { return fail(failure) }
                continue
            }
            if end == lineStart { return finish() }
            if let failure = fieldLine(bytes, lineStart, end) { return fail(failure) }
        }
        if bytes.count >= maxHeadBytes { return fail(.headTooLarge) }
        return .needMore
    }

    private mutating func fail(_ failure: Failure) -> Result {
        self = HTTPRequestParser()
        return .failed(failure)
    }

    /// The empty line after the fields: framing and the Host rule, then the request.
    private mutating func finish() -> Result {
        let consumed = checked
        if contentLength && transferEncoding { return fail(.malformed) }
        if transferEncoding || contentNotEmpty { return fail(.contentNotAccepted) }
        if minorVersion >= 1 && hosts != 1 { return fail(.malformed) }
        if minorVersion == 0 && hosts > 1 { return fail(.malformed) }
        let keepAlive = minorVersion >= 1 ? !connectionClose : (connectionKeepAlive && !connectionClose)
        let head = HTTPRequestHead(method: method, target: target, minorVersion: minorVersion, keepAlive: keepAlive)
        self = HTTPRequestParser()
        return .request(head, consumed: consumed)
    }

    // MARK: the request line (RFC 9112 §3)

    private mutating func requestLine(_ b: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Failure? {
        guard let sp1 = Self.firstByte(32, b, from: start, to: end), sp1 > start,
              let sp2 = Self.firstByte(32, b, from: sp1 + 1, to: end), sp2 > sp1 + 1
        else { return .malformed }
        for i in start..<sp1 where !Self.isTokenChar(b[i]) { return .malformed }
        for i in (sp1 + 1)..<sp2 where !(b[i] > 32 && b[i] < 127) { return .malformed }
        // HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (§2.3).
        guard end - (sp2 + 1) == 8, Self.matches(b, at: sp2 + 1, "HTTP/"),
              Self.isDigit(b[sp2 + 6]), b[sp2 + 7] == 46, Self.isDigit(b[sp2 + 8])
        else { return .malformed }
        let major = Int(b[sp2 + 6] - 48)
        let minor = Int(b[sp2 + 8] - 48)
        guard major == 1 else { return .versionNotSupported }
        minorVersion = minor == 0 ? 0 : 1
        if sp1 - start == 3 && Self.matches(b, at: start, "GET") {
            method = .get
        } else if sp1 - start == 4 && Self.matches(b, at: start, "HEAD") {
            method = .head
        } else {
            method = .other
        }
        target = Self.isMetricsPath(b, sp1 + 1, sp2) ? .metrics : .other
        return nil
    }

    /// origin-form `/metrics[?query]`, or absolute-form `http[s]://authority/metrics[?query]`
    /// (§3.2.2: a server must accept the absolute form).
    private static func isMetricsPath(_ b: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Bool {
        var pathStart = start
        if b[start] != 47 {  // not "/": absolute-form or nothing we serve
            var i = start
            var scheme = true
            while i < end, b[i] != 58 {  // ":"
                let c = b[i] | 0x20
                if !(c >= 97 && c <= 122) { scheme = false }
                i += 1
            }
            guard scheme, i + 2 < end, b[i + 1] == 47, b[i + 2] == 47 else { return false }
            guard let slash = firstByte(47, b, from: i + 3, to: end) else { return false }
            pathStart = slash
        }
        let pathEnd = firstByte(63, b, from: pathStart, to: end) ?? end  // "?"
        return pathEnd - pathStart == 8 && matches(b, at: pathStart, "/metrics")
    }

    // MARK: field lines (RFC 9112 §5, RFC 9110 §5)

    private mutating func fieldLine(_ b: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Failure? {
        // A line starting with whitespace is obsolete line folding (§5.2), and a field name
        // is a token followed at once by ":" (§5.1: whitespace before it is a 400).
        guard let colon = Self.firstByte(58, b, from: start, to: end), colon > start else { return .malformed }
        for i in start..<colon where !Self.isTokenChar(b[i]) { return .malformed }
        var valueStart = colon + 1
        var valueEnd = end
        while valueStart < valueEnd, b[valueStart] == 32 || b[valueStart] == 9 { valueStart += 1 }
        while valueEnd > valueStart, b[valueEnd - 1] == 32 || b[valueEnd - 1] == 9 { valueEnd -= 1 }
        // field-value: VCHAR, obs-text, SP and HTAB inside; no other control octet.
        for i in valueStart..<valueEnd {
            let c = b[i]
            if (c < 32 && c != 9) || c == 127 { return .malformed }
        }
        let nameLength = colon - start
        if Self.nameIs(b, start, nameLength, "host") {
            hosts += 1
        } else if Self.nameIs(b, start, nameLength, "content-length") {
            // 1*DIGIT (RFC 9110 §8.6); only zero or not matters, so no number is formed
            // and no length of digits can overflow.
            guard valueEnd > valueStart else { return .malformed }
            for i in valueStart..<valueEnd {
                guard Self.isDigit(b[i]) else { return .malformed }
                if b[i] != 48 { contentNotEmpty = true }
            }
            contentLength = true
        } else if Self.nameIs(b, start, nameLength, "transfer-encoding") {
            transferEncoding = true
        } else if Self.nameIs(b, start, nameLength, "connection") {
            // A comma-separated list of case-insensitive tokens (RFC 9110 §7.6.1).
            var i = valueStart
            while i < valueEnd {
                var tokenEnd = Self.firstByte(44, b, from: i, to: valueEnd) ?? valueEnd
                let next = tokenEnd + 1
                var tokenStart = i
                while tokenStart < tokenEnd, b[tokenStart] == 32 || b[tokenStart] == 9 { tokenStart += 1 }
                while tokenEnd > tokenStart, b[tokenEnd - 1] == 32 || b[tokenEnd - 1] == 9 { tokenEnd -= 1 }
                if Self.nameIs(b, tokenStart, tokenEnd - tokenStart, "close") { connectionClose = true }
                if Self.nameIs(b, tokenStart, tokenEnd - tokenStart, "keep-alive") { connectionKeepAlive = true }
                i = next
            }
        }
        return nil
    }

    // MARK: octets

    private static func firstLF(_ b: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        firstByte(10, b, from: from, to: to)
    }

    private static func firstByte(_ byte: UInt8, _ b: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
        var i = from
        while i < to {
            if b[i] == byte { return i }
            i += 1
        }
        return nil
    }

    /// A line not ended yet that can never become valid: a control octet other than HTAB, a
    /// CR not at its end (a bare CR, §2.2), DEL, or (in the request line) a non-ASCII octet.
    /// Lets garbage without a line end be refused at once instead of at `maxHeadBytes`.
    private static func partialLineIsHopeless(_ b: UnsafeRawBufferPointer, from: Int, to: Int, requestLine: Bool) -> Bool {
        var i = from
        while i < to {
            let c = b[i]
            if c == 13 {
                if i + 1 < to { return true }  // a CR followed by anything but LF
            } else if (c < 32 && c != 9) || c == 127 || (requestLine && c > 127) {
                return true
            }
            i += 1
        }
        return false
    }

    private static func matches(_ b: UnsafeRawBufferPointer, at start: Int, _ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard start + count <= b.count else { return false }
        let p = text.utf8Start
        for k in 0..<count where b[start + k] != p[k] { return false }
        return true
    }

    /// Case-insensitive comparison with a lower-case ASCII name (field names, §5.1).
    private static func nameIs(_ b: UnsafeRawBufferPointer, _ start: Int, _ length: Int, _ name: StaticString) -> Bool {
        guard length == name.utf8CodeUnitCount else { return false }
        let p = name.utf8Start
        for k in 0..<length {
            var c = b[start + k]
            if c >= 65 && c <= 90 { c |= 0x20 }
            if c != p[k] { return false }
        }
        return true
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }

    /// tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~", digits and letters.
    private static func isTokenChar(_ c: UInt8) -> Bool {
        switch c {
        case 48...57, 65...90, 97...122: return true
        case 33, 35, 36, 37, 38, 39, 42, 43, 45, 46, 94, 95, 96, 124, 126: return true
        default: return false
        }
    }
}
