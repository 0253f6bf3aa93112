/// The v1 (text) header, proxy-protocol.txt §2.1:
///
///     PROXY TCP4 <src> <dst> <sport> <dport>\r\n
///     PROXY TCP6 <src> <dst> <sport> <dport>\r\n
///     PROXY UNKNOWN[ <anything>]\r\n
///
/// Single spaces, strict addresses of the named family, decimal ports 0...65535 without leading
/// zeros, CRLF within 107 octets; "UNKNOWN" may carry anything up to the CRLF, which the
/// receiver ignores (it keeps the real endpoints).
enum V1 {
    static let space = UInt8(ascii: " ")
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A
    static let tcp4 = Array("TCP4".utf8)
    static let tcp6 = Array("TCP6".utf8)
    static let unknown = Array("UNKNOWN".utf8)
    /// Longest address text: a full IPv6 address is 8 × 4 hex digits and 7 colons = 39
    /// (`ffff:…:255.255.255.255` is 45 but the 107-octet line bound still holds).
    static let maxIPv6TextLength = 45
    static let maxIPv4TextLength = 15

    static func parse(_ c: inout Cursor) throws(Stop) -> (ProxyHeader, Int) {
        for expected in ProxyHeaderParser.v1Prefix {
            // "P" already matched; any other octet here means this is not the protocol.
            guard try c.next(tooLong: .v1TooLong) == expected else { throw .invalid(.notProxyProtocol) }
        }
        // The protocol name: rejected as soon as it stops being a prefix of a known one.
        let protocolStart = c.position
        while true {
            let byte = try c.peek(tooLong: .v1TooLong)
            if byte == space || byte == cr { break }
            c.position += 1
            let name = c.input[protocolStart..<c.position]
            guard tcp4.starts(with: name) || tcp6.starts(with: name) || unknown.starts(with: name) else {
                throw .invalid(.v1BadProtocol)
            }
        }
        let name = c.input[protocolStart..<c.position]
        if name.elementsEqual(unknown) {
            // Short form "PROXY UNKNOWN\r\n", or anything after a space up to the CRLF.
            if try c.next(tooLong: .v1TooLong) == space {
                while true {
                    let byte = try c.next(tooLong: .v1TooLong)
                    if byte == lf { throw .invalid(.v1BadLineEnd) }
                    if byte == cr { break }
                }
            }
            try expectLF(&c)
            return (ProxyHeader(version: .v1, command: .proxy), c.position)
        }
        let isIPv6 = name.elementsEqual(tcp6)
        guard isIPv6 || name.elementsEqual(tcp4) else { throw .invalid(.v1BadProtocol) }
        guard try c.next(tooLong: .v1TooLong) == space else { throw .invalid(.v1BadSyntax) }

        // Each field is checked as soon as its terminator arrives (an early "no"); the header
        // is accepted only at the CRLF (§2.1: decode only a complete line).
        let addressLength = isIPv6 ? maxIPv6TextLength : maxIPv4TextLength
        let addressCharacter = isIPv6 ? isIPv6Character : isIPv4Character
        let sourceText = try field(&c, terminator: space, maxLength: addressLength, allowed: addressCharacter, error: .v1BadAddress)
        guard let source = address(c.input, sourceText, isIPv6: isIPv6) else { throw .invalid(.v1BadAddress) }
        let destinationText = try field(&c, terminator: space, maxLength: addressLength, allowed: addressCharacter, error: .v1BadAddress)
        guard let destination = address(c.input, destinationText, isIPv6: isIPv6) else { throw .invalid(.v1BadAddress) }
        let sourcePortText = try field(&c, terminator: space, maxLength: 5, allowed: isDigit, error: .v1BadPort)
        guard let sourcePort = ProxyText.parsePort(slice(c.input, sourcePortText)) else { throw .invalid(.v1BadPort) }
        let destinationPortText = try field(&c, terminator: cr, maxLength: 5, allowed: isDigit, error: .v1BadPort)
        guard let destinationPort = ProxyText.parsePort(slice(c.input, destinationPortText)) else { throw .invalid(.v1BadPort) }
        try expectLF(&c)
        let header = ProxyHeader(
            version: .v1, command: .proxy, family: isIPv6 ? .inet6 : .inet, transportProtocol: .stream,
            source: ProxyEndpoint(address: source, port: sourcePort),
            destination: ProxyEndpoint(address: destination, port: destinationPort))
        return (header, c.position)
    }

    /// Reads one field up to `terminator` (consumed) and returns its range. Checked octet by
    /// octet so garbage is refused before the line ends: an octet outside `allowed` is `error`
    /// (a space or CR in the wrong place is a syntax error, a bare LF a line-end error); an
    /// empty field (two spaces) is a syntax error; more than `maxLength` octets is `error`.
    static func field(_ c: inout Cursor, terminator: UInt8, maxLength: Int, allowed: (UInt8) -> Bool,
                      error: ProxyHeaderError) throws(Stop) -> Range<Int> {
        let start = c.position
        while true {
            let byte = try c.next(tooLong: .v1TooLong)
            if byte == terminator {
                guard c.position - 1 > start else { throw .invalid(.v1BadSyntax) }
                return start..<(c.position - 1)
            }
            if byte == lf { throw .invalid(.v1BadLineEnd) }
            if byte == space || byte == cr { throw .invalid(.v1BadSyntax) }
            guard allowed(byte), c.position - start <= maxLength else { throw .invalid(error) }
        }
    }

    static func expectLF(_ c: inout Cursor) throws(Stop) {
        guard try c.next(tooLong: .v1TooLong) == lf else { throw .invalid(.v1BadLineEnd) }
    }

    static func slice(_ input: UnsafeRawBufferPointer, _ range: Range<Int>) -> ArraySlice<UInt8> {
        Array(input[range])[...]
    }

    static func address(_ input: UnsafeRawBufferPointer, _ range: Range<Int>, isIPv6: Bool) -> ProxyAddress? {
        let text = slice(input, range)
        if isIPv6 {
            guard let (high, low) = ProxyText.parseIPv6(text) else { return nil }
            return .v6(high: high, low: low)
        }
        return ProxyText.parseIPv4(text).map { .v4($0) }
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    static func isIPv4Character(_ byte: UInt8) -> Bool { isDigit(byte) || byte == UInt8(ascii: ".") }
    static func isIPv6Character(_ byte: UInt8) -> Bool {
        ProxyText.hexDigit(byte) != nil || byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".")
    }
}
