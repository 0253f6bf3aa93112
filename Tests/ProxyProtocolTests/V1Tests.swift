import ProxyProtocol
import Testing

/// v1 (text) headers, proxy-protocol.txt §2.1.
@Suite struct V1Tests {
    @Test func tcp4() {
        let h = header(b("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"))
        #expect(h == ProxyHeader(version: .v1, command: .proxy, family: .inet, transportProtocol: .stream,
                                 source: endpoint("192.168.0.1", 56324), destination: endpoint("192.168.0.11", 443)))
        #expect(h?.source?.address == .v4(0xC0A8_0001))
    }

    @Test func tcp4Extremes() {
        let h = header(b("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"))
        #expect(h?.source == ProxyEndpoint(address: .v4(0), port: 0))
        #expect(h?.destination == ProxyEndpoint(address: .v4(0xFFFF_FFFF), port: 65535))
    }

    @Test(arguments: [
        ("2001:db8::1", ProxyAddress.v6(high: 0x2001_0DB8_0000_0000, low: 1)),
        ("::1", .v6(high: 0, low: 1)),
        ("::", .v6(high: 0, low: 0)),
        ("1::", .v6(high: 0x0001_0000_0000_0000, low: 0)),
        ("2001:DB8:0:0:0:0:0:A", .v6(high: 0x2001_0DB8_0000_0000, low: 0xA)),
        ("::ffff:192.0.2.1", .v6(high: 0, low: 0xFFFF_C000_0201)),
        ("1:2:3:4:5:6:7:8", .v6(high: 0x0001_0002_0003_0004, low: 0x0005_0006_0007_0008)),
        ("1:2:3:4:5:6:1.2.3.4", .v6(high: 0x0001_0002_0003_0004, low: 0x0005_0006_0102_0304)),
        ("1::8", .v6(high: 0x0001_0000_0000_0000, low: 8)),
        ("1:2:3:4:5:6:7::", .v6(high: 0x0001_0002_0003_0004, low: 0x0005_0006_0007_0000)),
    ])
    func tcp6Forms(text: String, address: ProxyAddress) {
        let h = header(b("PROXY TCP6 \(text) ::1 1 110\r\n"))
        #expect(h?.source?.address == address)
        #expect(h?.family == .inet6)
    }

    @Test func longestLinesFit() {
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        let tcp6 = b("PROXY TCP6 \(full) \(full) 65535 65535\r\n")
        #expect(tcp6.count == 104)
        #expect(header(tcp6)?.source?.address == .v6(high: .max, low: .max))
        // The worst case the spec counts: UNKNOWN with the longest TCP6 fields, 107 octets.
        let unknown = b("PROXY UNKNOWN \(full) \(full) 65535 65535\r\n")
        #expect(unknown.count == ProxyHeaderParser.maxV1Length)
        #expect(header(unknown) == ProxyHeader(version: .v1, command: .proxy))
    }

    @Test func unknownShortAndLong() {
        #expect(header(b("PROXY UNKNOWN\r\n")) == ProxyHeader(version: .v1, command: .proxy))
        // Anything before the CRLF is ignored, even garbage addresses.
        let h = header(b("PROXY UNKNOWN 999.1.1.1 zz 70000 x\r\n"))
        #expect(h?.source == nil)
        #expect(h?.family == .unspec)
    }

    @Test(arguments: [
        // Line ends (§2.1: no single CR or LF in place of CRLF)
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyHeaderError.v1BadLineEnd),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", .v1BadLineEnd),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", .v1BadLineEnd),
        ("PROXY UNKNOWN\n", .v1BadProtocol),
        ("PROXY UNKNOWN foo\nbar\r\n", .v1BadLineEnd),
        ("PROXY UNKNOWN\rX", .v1BadLineEnd),
        // Protocol names
        ("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", .v1BadProtocol),
        ("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", .v1BadProtocol),
        ("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", .v1BadProtocol),
        ("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", .v1BadProtocol),
        ("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", .v1BadProtocol),
        ("PROXY UNKNOWNX\r\n", .v1BadProtocol),
        ("PROXY TCP4\r\n", .v1BadSyntax),
        // Separators and missing fields
        ("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", .v1BadSyntax),
        ("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", .v1BadSyntax),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", .v1BadSyntax),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", .v1BadSyntax),
        ("PROXY TCP4 1.2.3.4 5.6.7.8\r\n", .v1BadSyntax),
        ("PROXY TCP4 1.2.3.4\r\n", .v1BadSyntax),
        ("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", .v1BadAddress),
        // Ports
        ("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", .v1BadPort),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", .v1BadPort),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", .v1BadPort),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 0110 2\r\n", .v1BadPort),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", .v1BadPort),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n", .v1BadPort),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", .v1BadPort),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", .v1BadPort),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 0x6e\r\n", .v1BadPort),
        // IPv4 addresses
        ("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 1..2.3 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 1.2.3.4a 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 1111.2.3.4 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", .v1BadAddress),
        ("PROXY TCP4 1.2.3.4 5.6.7.8.9.10.11.12.13 1 2\r\n", .v1BadAddress),
        // IPv6 addresses (and the family must match the protocol)
        ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 1::2::3 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 1:::2 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 12345::1 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 g::1 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 :1::2 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 1::2: ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 1:2:3:4:5:6:7:8:: ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 ::1.2.3.4:5 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 ::256.1.1.1 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ::1 1 2\r\n", .v1BadAddress),
        ("PROXY TCP6 ::1 ::1%eth0 1 2\r\n", .v1BadAddress),
        // Not the protocol at all
        ("PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n", .notProxyProtocol),
        ("PASS secret\r\n", .notProxyProtocol),
        ("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", .notProxyProtocol),
        ("USER alice\r\n", .notProxyProtocol),
        ("PROXY\r\n", .notProxyProtocol),
    ])
    func malformed(line: String, error: ProxyHeaderError) {
        #expect(parseAllWays(b(line)) == .invalid(error), "\(line.debugDescription)")
    }

    /// §2.1: no CRLF in the first 107 octets is invalid, even if it comes later; exactly 107 is fine.
    @Test func crlfWithin107Octets() {
        let base = b("PROXY UNKNOWN ")
        let fits = base + [UInt8](repeating: UInt8(ascii: "a"), count: 107 - base.count - 2) + b("\r\n")
        #expect(parseAllWays(fits) == .header(ProxyHeader(version: .v1, command: .proxy), consumed: 107))
        let over = base + [UInt8](repeating: UInt8(ascii: "a"), count: 107 - base.count - 1) + b("\r\n")
        #expect(parseAllWays(over) == .invalid(.v1TooLong))
        // Without any CRLF: invalid once 107 octets are in without one (no later octet can put
        // a CRLF inside the first 107), not before.
        let endless = base + [UInt8](repeating: UInt8(ascii: "a"), count: 200)
        #expect(ProxyHeaderParser().parse(Array(endless.prefix(106))) == .needMore)
        #expect(ProxyHeaderParser().parse(Array(endless.prefix(107))) == .invalid(.v1TooLong))
        // A CR as the 107th octet: its LF would be the 108th, so that is over the limit too.
        let crLast = base + [UInt8](repeating: UInt8(ascii: "a"), count: 107 - base.count - 1) + b("\r")
        #expect(crLast.count == 107)
        #expect(ProxyHeaderParser().parse(crLast) == .invalid(.v1TooLong))
    }

    /// The verdict comes at the first octet that cannot belong to a header, not at the timeout.
    @Test func decidesEarly() {
        let parser = ProxyHeaderParser()
        #expect(parser.parse(b("U")) == .invalid(.notProxyProtocol))
        #expect(parser.parse([0x16, 0x03, 0x01]) == .invalid(.notProxyProtocol))  // a TLS ClientHello
        #expect(parser.parse(b("P")) == .needMore)
        #expect(parser.parse(b("PROX")) == .needMore)
        #expect(parser.parse(b("PROXI")) == .invalid(.notProxyProtocol))
        #expect(parser.parse(b("PROXY T")) == .needMore)
        #expect(parser.parse(b("PROXY TCPX")) == .invalid(.v1BadProtocol))
        #expect(parser.parse(b("PROXY TCP4 1.2.3.4")) == .needMore)
        #expect(parser.parse(b("PROXY TCP4 1.2.3.x")) == .invalid(.v1BadAddress))
        #expect(parser.parse(b("PROXY TCP4 1.2.3.4 5.6.7.8 99")) == .needMore)
        #expect(parser.parse(b("PROXY TCP4 1.2.3.4 5.6.7.8 9q")) == .invalid(.v1BadPort))
        // A complete field out of range is refused at its terminator, before the CRLF.
        #expect(parser.parse(b("PROXY TCP4 1.2.3.256 ")) == .invalid(.v1BadAddress))
        #expect(parser.parse(b("PROXY TCP6 1::2::3 ")) == .invalid(.v1BadAddress))
        #expect(parser.parse(b("PROXY TCP4 1.2.3.4 5.6.7.8 65536 ")) == .invalid(.v1BadPort))
        #expect(parser.parse(b("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r")) == .invalid(.v1BadPort))
        // Fields are complete only at their terminator, and nothing is accepted before the CRLF.
        #expect(parser.parse(b("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r")) == .needMore)
        #expect(parser.parse([]) == .needMore)
    }

    @Test func everyProperPrefixOfAValidLineNeedsMore() {
        let line = b("PROXY TCP6 2001:db8::7 2001:db8::1 40000 995\r\n")
        for n in 0..<line.count {
            #expect(ProxyHeaderParser().parse(Array(line.prefix(n))) == .needMore, "prefix \(n)")
        }
    }
}
