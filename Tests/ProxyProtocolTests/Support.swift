import ProxyProtocol
import Testing
import TestSupport

/// The UTF-8 octets of `text`.
func b(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Feeds `segments` the way the glue will: append each segment to the buffer, parse the whole
/// unconsumed buffer, stop at the first answer that is not `.needMore`.
func feed(_ segments: [[UInt8]], parser: ProxyHeaderParser = ProxyHeaderParser()) -> ProxyParseResult {
    var buffer: [UInt8] = []
    for segment in segments {
        buffer += segment
        let result = parser.parse(buffer)
        if result != .needMore { return result }
    }
    return .needMore
}

/// Parses `bytes` whole, byte by byte, split in two at every point, and with `application`
/// octets in the same segment; every delivery must give the same result, which is returned.
func parseAllWays(_ bytes: [UInt8], application: [UInt8] = b("USER alice\r\n"),
                  parser: ProxyHeaderParser = ProxyHeaderParser(),
                  sourceLocation: SourceLocation = #_sourceLocation) -> ProxyParseResult {
    let whole = feed([bytes], parser: parser)
    #expect(feed(bytes.map { [$0] }, parser: parser) == whole, "byte by byte", sourceLocation: sourceLocation)
    for split in 0...bytes.count {
        let twoSegments = [Array(bytes[..<split]), Array(bytes[split...])]
        #expect(feed(twoSegments, parser: parser) == whole, "split at \(split)", sourceLocation: sourceLocation)
    }
    // The first application bytes in the same segment: the same header and the same count
    // consumed (they stay the application's), or the same refusal.
    #expect(feed([bytes + application], parser: parser) == whole, "with application bytes", sourceLocation: sourceLocation)
    #expect(feed(bytes.map { [$0] } + [application], parser: parser) == whole, sourceLocation: sourceLocation)
    return whole
}

/// The parsed header, or nil (recording an issue) when it was not a header of `bytes.count` octets.
func header(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> ProxyHeader? {
    let result = parseAllWays(bytes, sourceLocation: sourceLocation)
    guard case .header(let header, let consumed) = result else {
        Issue.record("expected a header, got \(result)", sourceLocation: sourceLocation)
        return nil
    }
    #expect(consumed == bytes.count, sourceLocation: sourceLocation)
    return header
}

func endpoint(_ address: String, _ port: UInt16) -> ProxyEndpoint {
    guard let parsed = ProxyAddress(address) else {
        Issue.record("test address \(address) does not parse")
        return ProxyEndpoint(address: .v4(0), port: port)
    }
    return ProxyEndpoint(address: parsed, port: port)
}

let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

/// A v2 header by hand: signature, version/command octet, family octet, `body` (length
/// computed unless given).
func v2(_ versionCommand: UInt8, _ family: UInt8, _ body: [UInt8], length: Int? = nil) -> [UInt8] {
    let n = length ?? body.count
    return v2Signature + [versionCommand, family, UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)] + body
}

func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] {
    [type, UInt8(truncatingIfNeeded: value.count >> 8), UInt8(truncatingIfNeeded: value.count)] + value
}
