/// Reads the PROXY protocol header at the start of a connection (HAProxy's
/// doc/proxy-protocol.txt, v1 §2.1 and v2 §2.2): pure, resumable and bounded (ARCHITECTURE.md
/// convention 4).
///
/// The caller passes all the octets received so far that it has not consumed and gets
/// `.needMore` (a valid prefix: read more, call again with the longer input),
/// `.header(h, consumed: n)` (drop `n` octets; the rest is the application's), or
/// `.invalid(reason)` (close). Any split of the same bytes across calls gives the same result,
/// because the parser keeps no state between calls: it re-reads the prefix, which is at most
/// `maxV1Length` octets (v1) or 16 octets until a v2 header is complete, so the re-reading is
/// bounded and cheap, and nothing can be left half-updated by a short read.
///
/// It decides as early as the bytes allow: the first octet that cannot continue "PROXY " or the
/// v2 signature, a v2 version/command/family octet out of range, or a v2 length over the limit
/// makes it `.invalid` at once (a client that sends no header but its own protocol is closed
/// without waiting for a timeout). v1 fields are checked as each one ends, but no header is
/// accepted before its CRLF (§2.1) and no v2 header before all `16 + length` octets (§2.2).
/// It never reads past the input it was given.
public struct ProxyHeaderParser: Sendable {
    /// Longest v1 line including CRLF (§2.1: the UNKNOWN worst case with two full IPv6
    /// addresses and ports is 107 characters).
    public static let maxV1Length = 107
    /// The v2 fixed part: 12-octet signature, version/command, family/transport, length.
    public static let v2FixedLength = 16
    /// Largest v2 address block (AF_UNIX: 2 × 108 octets, §2.2).
    public static let maxV2AddressLength = 216
    /// TLV octets accepted after the address block by default. HAProxy's richest header
    /// (`send-proxy-v2-ssl-cn` with ALPN, AUTHORITY up to a 255-octet host name, a 128-octet
    /// UNIQUE_ID, CRC32C and the SSL sub-TLVs) stays well under this; a longer one is refused
    /// rather than buffered.
    public static let defaultV2TLVBudget = 1024
    /// Default bound on a whole v2 header: 16 + 216 + 1024 = 1256 octets.
    public static let defaultMaxV2Length = v2FixedLength + maxV2AddressLength + defaultV2TLVBudget
    /// Longest UNIQUE_ID value (§2.2.5: "up to 128 bytes").
    public static let maxUniqueIDLength = 128

    /// The v2 signature (§2.2); its 5th octet is NUL, so it is never a C string.
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// "PROXY " (§2.1).
    public static let v1Prefix: [UInt8] = Array("PROXY ".utf8)

    /// Longest v2 header accepted (16 + length field); longer is `.invalid(.v2TooLong)`.
    public let maxV2Length: Int

    /// - Parameter maxV2Length: bound on a v2 header in octets, clamped to at least
    ///   16 + 216 (so every address block fits) and at most 16 + 65535 (the length field's range).
    public init(maxV2Length: Int = ProxyHeaderParser.defaultMaxV2Length) {
        self.maxV2Length = min(max(maxV2Length, Self.v2FixedLength + Self.maxV2AddressLength), Self.v2FixedLength + 0xFFFF)
    }

    /// Parses the header at the front of `input`.
    public func parse(_ input: UnsafeRawBufferPointer) -> ProxyParseResult {
        guard let first = input.first else { return .needMore }
        do throws(Stop) {
            let result: (ProxyHeader, Int)
            if first == Self.v1Prefix[0] {
                var cursor = Cursor(input: input, limit: Self.maxV1Length)
                result = try V1.parse(&cursor)
            } else if first == Self.v2Signature[0] {
                var cursor = Cursor(input: input, limit: maxV2Length)
                result = try V2.parse(&cursor, maxLength: maxV2Length)
            } else {
                return .invalid(.notProxyProtocol)
            }
            return .header(result.0, consumed: result.1)
        } catch {
            switch error {
            case .needMore: return .needMore
            case .invalid(let reason): return .invalid(reason)
            }
        }
    }

    /// Parses the header at the front of `input`.
    public func parse(_ input: [UInt8]) -> ProxyParseResult {
        input.withUnsafeBytes { parse($0) }
    }
}

/// Internal control flow of the parsers: running out of input or meeting a bad octet unwinds
/// to `parse`, which turns it into the public value. Never seen outside this module.
enum Stop: Error {
    case needMore
    case invalid(ProxyHeaderError)
}

/// A read position over the input. Every read is bounds-checked: past the input is `.needMore`,
/// past `limit` (v1: 107 octets) is the caller's "too long" error.
struct Cursor {
    let input: UnsafeRawBufferPointer
    /// Octets at `limit` and beyond are never part of a header.
    let limit: Int
    var position = 0

    init(input: UnsafeRawBufferPointer, limit: Int) {
        self.input = input
        self.limit = limit
    }

    /// The next octet without consuming it.
    func peek(tooLong: ProxyHeaderError) throws(Stop) -> UInt8 {
        guard position < limit else { throw .invalid(tooLong) }
        guard position < input.count else { throw .needMore }
        return input[position]
    }

    /// The next octet.
    mutating func next(tooLong: ProxyHeaderError) throws(Stop) -> UInt8 {
        let byte = try peek(tooLong: tooLong)
        position += 1
        return byte
    }

    /// Waits until `count` octets from the current position are available (no consumption).
    func require(_ count: Int) throws(Stop) {
        guard input.count - position >= count else { throw .needMore }
    }

    /// Octet at `offset` from the start; the caller has `require`d it.
    func byte(at offset: Int) -> UInt8 { input[offset] }

    /// Big-endian 16-bit value at `offset`; the caller has `require`d it.
    func uint16(at offset: Int) -> UInt16 { UInt16(input[offset]) << 8 | UInt16(input[offset + 1]) }

    /// Big-endian 32-bit value at `offset`; the caller has `require`d it.
    func uint32(at offset: Int) -> UInt32 {
        UInt32(uint16(at: offset)) << 16 | UInt32(uint16(at: offset + 2))
    }

    /// Copy of `range`; the caller has `require`d it.
    func bytes(_ range: Range<Int>) -> [UInt8] { Array(input[range]) }
}
