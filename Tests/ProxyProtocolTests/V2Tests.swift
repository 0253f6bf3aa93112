import ProxyProtocol
import Testing

/// v2 (binary) headers, proxy-protocol.txt §2.2.
@Suite struct V2Tests {
    static let tcp4Block: [UInt8] = [192, 0, 2, 1, 198, 51, 100, 1, 0x04, 0xD2, 0x00, 0x6E]

    @Test func tcp4ByHand() {
        let h = header(v2(0x21, 0x11, Self.tcp4Block))
        #expect(h == ProxyHeader(version: .v2, command: .proxy, family: .inet, transportProtocol: .stream,
                                 source: endpoint("192.0.2.1", 1234), destination: endpoint("198.51.100.1", 110)))
        // The encoder produces exactly these octets.
        let built = ProxyHeaderEncoder.v2(.tcp(version: .v2, source: endpoint("192.0.2.1", 1234),
                                               destination: endpoint("198.51.100.1", 110)))
        #expect(built == v2(0x21, 0x11, Self.tcp4Block))
    }

    @Test func tcp6AndUDP() {
        let source: [UInt8] = [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [7]
        let destination: [UInt8] = [UInt8](repeating: 0, count: 15) + [1]
        let h = header(v2(0x21, 0x21, source + destination + [0x9C, 0x40, 0x03, 0xE3]))
        #expect(h?.source == endpoint("2001:db8::7", 40000))
        #expect(h?.destination == endpoint("::1", 995))
        #expect(h?.family == .inet6)
        let udp = header(v2(0x21, 0x12, Self.tcp4Block))
        #expect(udp?.transportProtocol == .datagram)
        #expect(udp?.source == endpoint("192.0.2.1", 1234))
    }

    @Test func unixAndUnspecKeepTheRealAddresses() {
        let unix = header(v2(0x21, 0x31, [UInt8](repeating: 0x41, count: 216)))
        #expect(unix?.family == .unix)
        #expect(unix?.source == nil && unix?.destination == nil)
        let unspec = header(v2(0x21, 0x00, []))
        #expect(unspec == ProxyHeader(version: .v2, command: .proxy))
    }

    /// §2.2: LOCAL (health checks) ignores the family and the address block; "must not assume
    /// zero is presented for LOCAL connections".
    @Test func local() {
        #expect(header(v2(0x20, 0x00, [])) == ProxyHeader(version: .v2, command: .local))
        #expect(header(v2(0x20, 0x11, Self.tcp4Block)) == ProxyHeader(version: .v2, command: .local))
        #expect(header(v2(0x20, 0x11, [])) == ProxyHeader(version: .v2, command: .local))
        #expect(header(v2(0x20, 0xFF, [1, 2, 3])) == ProxyHeader(version: .v2, command: .local))
        // TLVs after a block that fits are still read, so a CRC on a health check is checked.
        let checked = ProxyHeaderEncoder.v2(ProxyHeader(version: .v2, command: .local), crc: true) ?? []
        #expect(header(checked)?.crcVerified == true)
        var broken = checked
        broken[broken.count - 1] ^= 1
        #expect(parseAllWays(broken) == .invalid(.v2BadChecksum))
    }

    @Test func tlvs() {
        let ssl = tlv(0x20, [0x07, 0, 0, 0, 0] + tlv(0x21, b("TLSv1.3")) + tlv(0x22, b("client.example"))
                      + tlv(0x23, b("TLS_AES_256_GCM_SHA384")) + tlv(0x24, b("RSA-SHA256")) + tlv(0x25, b("RSA2048"))
                      + tlv(0x2F, b("unknown sub")))
        let body = Self.tcp4Block + tlv(0x01, b("pop3")) + tlv(0x02, b("mail.example.org")) + tlv(0x04, [0, 0, 0])
            + tlv(0x05, [UInt8](repeating: 0xAB, count: 128)) + ssl + tlv(0x30, b("blue")) + tlv(0xE0, b("custom"))
            + tlv(0xF8, []) + tlv(0x04, [])
        let h = header(v2(0x21, 0x11, body))
        #expect(h?.alpn == b("pop3"))
        #expect(h?.authority == b("mail.example.org"))
        #expect(h?.sni == b("mail.example.org"))
        #expect(h?.uniqueID == [UInt8](repeating: 0xAB, count: 128))
        #expect(h?.netns == b("blue"))
        #expect(h?.sslClient == true)
        #expect(h?.sslVersion == b("TLSv1.3"))
        #expect(h?.ssl == ProxySSLInfo(client: 7, verify: 0, version: b("TLSv1.3"), commonName: b("client.example"),
                                       cipher: b("TLS_AES_256_GCM_SHA384"), signatureAlgorithm: b("RSA-SHA256"),
                                       keyAlgorithm: b("RSA2048")))
        #expect(h?.crcVerified == false)
        #expect(h?.source == endpoint("192.0.2.1", 1234))
    }

    @Test func sslWithoutClientBit() {
        let h = header(v2(0x21, 0x11, Self.tcp4Block + tlv(0x20, [0x00, 0, 0, 0, 1])))
        #expect(h?.ssl == ProxySSLInfo(client: 0, verify: 1))
        #expect(h?.sslClient == false)
    }

    @Test func crcIsChecked() {
        var h = ProxyHeader.tcp(version: .v2, source: endpoint("203.0.113.9", 50000), destination: endpoint("10.0.0.1", 110))
        h.authority = b("pop.example.net")
        let bytes = ProxyHeaderEncoder.v2(h, crc: true) ?? []
        var expected = h
        expected.crcVerified = true
        #expect(header(bytes) == expected)
        // Any flipped bit after the fixed part is caught, except in the CRC TLV's own type
        // octet: a header whose CRC TLV became another type simply has no CRC (§2.2.3 protects
        // the content, not its own presence).
        let crcStart = bytes.count - 4
        for index in 16..<bytes.count where index != crcStart - 3 {
            var broken = bytes
            broken[index] ^= 0x10
            let result = ProxyHeaderParser().parse(broken)
            guard case .invalid = result else {
                Issue.record("flip at \(index) accepted: \(result)")
                continue
            }
        }
        // A checksum computed over the header as sent (field not zeroed) is wrong by §2.2.3.
        var wrong = bytes
        let asSent = CRC32C.checksum(bytes)
        for i in 0..<4 { wrong[crcStart + i] = UInt8(truncatingIfNeeded: asSent >> UInt32(24 - 8 * i)) }
        #expect(parseAllWays(wrong) == .invalid(.v2BadChecksum))
    }

    @Test(arguments: [
        // Version and command nibbles
        (v2(0x11, 0x11, tcp4Block), ProxyHeaderError.v2BadVersion(1)),
        (v2(0x31, 0x11, tcp4Block), .v2BadVersion(3)),
        (v2(0x01, 0x11, tcp4Block), .v2BadVersion(0)),
        (v2(0x22, 0x11, tcp4Block), .v2BadCommand(2)),
        (v2(0x2F, 0x11, tcp4Block), .v2BadCommand(15)),
        // Family and transport nibbles, and combinations §2.2 does not list
        (v2(0x21, 0x41, tcp4Block), .v2BadFamily(0x41)),
        (v2(0x21, 0x13, tcp4Block), .v2BadFamily(0x13)),
        (v2(0x21, 0x10, tcp4Block), .v2BadFamily(0x10)),
        (v2(0x21, 0x01, tcp4Block), .v2BadFamily(0x01)),
        (v2(0x21, 0xFF, tcp4Block), .v2BadFamily(0xFF)),
        // Family/length mismatch
        (v2(0x21, 0x11, Array(tcp4Block.prefix(11))), .v2AddressTooShort(family: 0x11, length: 11)),
        (v2(0x21, 0x11, []), .v2AddressTooShort(family: 0x11, length: 0)),
        (v2(0x21, 0x21, tcp4Block), .v2AddressTooShort(family: 0x21, length: 12)),
        (v2(0x21, 0x22, [UInt8](repeating: 0, count: 35)), .v2AddressTooShort(family: 0x22, length: 35)),
        (v2(0x21, 0x31, [UInt8](repeating: 0, count: 36)), .v2AddressTooShort(family: 0x31, length: 36)),
        // Length beyond the maximum (decided from the 16 fixed octets alone)
        (v2(0x21, 0x11, [], length: 0xFFFF), .v2TooLong(16 + 0xFFFF)),
        (v2(0x21, 0x11, [], length: ProxyHeaderParser.defaultMaxV2Length - 15), .v2TooLong(ProxyHeaderParser.defaultMaxV2Length + 1)),
        (v2(0x20, 0x00, [], length: 4000), .v2TooLong(4016)),
        // TLVs running past the end, or leftovers too short for a TLV
        (v2(0x21, 0x11, tcp4Block + [0x01, 0x00, 0x05, 0x61, 0x62]), .v2TLVOverrun),
        (v2(0x21, 0x11, tcp4Block + [0x01, 0xFF, 0xFF]), .v2TLVOverrun),
        (v2(0x21, 0x11, tcp4Block + [0x04]), .v2TLVOverrun),
        (v2(0x21, 0x11, tcp4Block + [0x04, 0x00]), .v2TLVOverrun),
        (v2(0x21, 0x11, tcp4Block + tlv(0x04, []) + [0x04, 0x00]), .v2TLVOverrun),
        (v2(0x21, 0x00, [0x02, 0x00, 0x10, 0x61]), .v2TLVOverrun),
        (v2(0x21, 0x11, tcp4Block + tlv(0x20, [1, 0, 0, 0, 0, 0x21, 0x00, 0x09, 0x54])), .v2TLVOverrun),
        (v2(0x21, 0x11, tcp4Block + tlv(0x20, [1, 0, 0, 0, 0, 0x21])), .v2TLVOverrun),
        // Known TLVs with impossible values or twice
        (v2(0x21, 0x11, tcp4Block + tlv(0x03, [0, 0, 0])), .v2BadTLV(type: 0x03)),
        (v2(0x21, 0x11, tcp4Block + tlv(0x03, [0, 0, 0, 0, 0])), .v2BadTLV(type: 0x03)),
        (v2(0x21, 0x11, tcp4Block + tlv(0x05, [UInt8](repeating: 1, count: 129))), .v2BadTLV(type: 0x05)),
        (v2(0x21, 0x11, tcp4Block + tlv(0x20, [1, 0, 0, 0])), .v2BadTLV(type: 0x20)),
        (v2(0x21, 0x11, tcp4Block + tlv(0x02, b("a")) + tlv(0x02, b("b"))), .v2BadTLV(type: 0x02)),
        (v2(0x21, 0x11, tcp4Block + tlv(0x20, [1, 0, 0, 0, 0] + tlv(0x21, b("x")) + tlv(0x21, b("y")))), .v2BadTLV(type: 0x21)),
        // A zero CRC field is not "no CRC": it is checked and wrong
        (v2(0x21, 0x11, tcp4Block + tlv(0x03, [0, 0, 0, 0])), .v2BadChecksum),
        // Wrong signature, at each of its octets
        ([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B, 0x21], .notProxyProtocol),
        ([0x0D, 0x0A, 0x0D, 0x0A, 0x01], .notProxyProtocol),
        ([0x0D, 0x0D], .notProxyProtocol),
        (b("\r\nQUIT\r\n"), .notProxyProtocol),
    ])
    func malformed(bytes: [UInt8], error: ProxyHeaderError) {
        #expect(parseAllWays(bytes) == .invalid(error))
    }

    @Test func wrongSignatureAtEveryOctet() {
        for index in 0..<12 {
            var bytes = v2(0x21, 0x11, Self.tcp4Block)
            bytes[index] ^= 0x40
            #expect(parseAllWays(bytes) == .invalid(.notProxyProtocol), "octet \(index)")
            // And the verdict needs no octet beyond the bad one.
            #expect(ProxyHeaderParser().parse(Array(bytes.prefix(index + 1))) == .invalid(.notProxyProtocol))
        }
    }

    /// A truncated header is never accepted: every proper prefix waits for more (the glue's
    /// timeout closes it), and the length is honoured exactly: what follows is not the header's.
    @Test func truncatedWaitsAndLengthIsExact() {
        var h = ProxyHeader.tcp(version: .v2, source: endpoint("2001:db8::7", 1), destination: endpoint("2001:db8::1", 2))
        h.uniqueID = b("abc")
        let bytes = ProxyHeaderEncoder.v2(h, crc: true) ?? []
        for n in 0..<bytes.count {
            #expect(ProxyHeaderParser().parse(Array(bytes.prefix(n))) == .needMore, "prefix \(n)")
        }
        let withTLSHello = bytes + [0x16, 0x03, 0x01, 0x02, 0x00]
        guard case .header(_, let consumed) = ProxyHeaderParser().parse(withTLSHello) else {
            Issue.record("no header")
            return
        }
        #expect(consumed == bytes.count)
    }

    @Test func lengthLimitIsConfigurableAndClamped() {
        let body = Self.tcp4Block + tlv(0x04, [UInt8](repeating: 0, count: 300))
        let bytes = v2(0x21, 0x11, body)
        #expect(parseAllWays(bytes, parser: ProxyHeaderParser(maxV2Length: 300)) == .invalid(.v2TooLong(bytes.count)))
        guard case .header = parseAllWays(bytes, parser: ProxyHeaderParser(maxV2Length: bytes.count)) else {
            Issue.record("a header at exactly the limit was refused")
            return
        }
        // Never below what the largest address block needs, never above the length field's range.
        #expect(ProxyHeaderParser(maxV2Length: 0).maxV2Length == 16 + 216)
        #expect(ProxyHeaderParser(maxV2Length: .max).maxV2Length == 16 + 65535)
    }
}
