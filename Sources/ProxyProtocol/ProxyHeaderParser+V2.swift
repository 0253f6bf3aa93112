/// The v2 (binary) header, proxy-protocol.txt §2.2:
///
///     12-octet signature | ver<<4 | cmd | family<<4 | transport | length (16 bits, BE)
///     address block (family-sized) | TLVs (type, 16-bit BE length, value)...
///
/// The header is exactly 16 + length octets. Rules applied here:
/// - version must be 2, command LOCAL (0) or PROXY (1);
/// - PROXY: family/transport must be one of the combinations §2.2 lists (0x00, 0x11, 0x12,
///   0x21, 0x22, 0x31, 0x32) and the length must hold the family's address block;
/// - LOCAL: "the family ... is ignored" (§2.2), so it never makes the header invalid; when it is
///   a listed combination and its block fits, the TLVs after it are still read (so a CRC32C on a
///   health check is checked), otherwise the whole block is skipped unread;
/// - TLVs must tile the rest exactly (a TLV running past the end, or 1-2 stray octets, is
///   invalid); unknown types are skipped; known ones must have a possible value and appear at
///   most once; a CRC32C TLV must match.
enum V2 {
    static func parse(_ c: inout Cursor, maxLength: Int) throws(Stop) -> (ProxyHeader, Int) {
        // Signature, octet by octet: the first mismatch is a verdict without waiting for 16.
        // (The cursor's limit is `maxLength`, at least 232, so the "too long" error given to
        // these first 14 reads can never be raised.)
        for expected in ProxyHeaderParser.v2Signature {
            guard try c.next(tooLong: .v2TooLong(0)) == expected else { throw .invalid(.notProxyProtocol) }
        }
        let versionCommand = try c.next(tooLong: .v2TooLong(0))
        guard versionCommand >> 4 == 2 else { throw .invalid(.v2BadVersion(versionCommand >> 4)) }
        let command: ProxyHeader.Command
        switch versionCommand & 0x0F {
        case 0: command = .local
        case 1: command = .proxy
        default: throw .invalid(.v2BadCommand(versionCommand & 0x0F))
        }
        let familyOctet = try c.next(tooLong: .v2TooLong(0))
        let listed = listedFamily(familyOctet)
        if command == .proxy && listed == nil { throw .invalid(.v2BadFamily(familyOctet)) }
        try c.require(2)
        let length = Int(c.uint16(at: 14))
        let total = ProxyHeaderParser.v2FixedLength + length
        guard total <= maxLength else { throw .invalid(.v2TooLong(total)) }
        if command == .proxy, let (family, _) = listed, length < family.addressBlockLength {
            throw .invalid(.v2AddressTooShort(family: familyOctet, length: length))
        }
        // §2.2: nothing is interpreted before the whole header is in.
        c.position = ProxyHeaderParser.v2FixedLength
        try c.require(length)

        var header = ProxyHeader(version: .v2, command: command)
        guard let (family, transport) = listed, length >= family.addressBlockLength else {
            // LOCAL with a family it ignores, or whose block does not fit: skipped whole.
            return (header, total)
        }
        let block = ProxyHeaderParser.v2FixedLength
        if command == .proxy {
            header.family = family
            header.transportProtocol = transport
            switch family {
            case .inet:
                header.source = ProxyEndpoint(address: .v4(c.uint32(at: block)), port: c.uint16(at: block + 8))
                header.destination = ProxyEndpoint(address: .v4(c.uint32(at: block + 4)), port: c.uint16(at: block + 10))
            case .inet6:
                let source = ProxyAddress(bytes: c.bytes(block..<(block + 16)))
                let destination = ProxyAddress(bytes: c.bytes((block + 16)..<(block + 32)))
                if let source, let destination {
                    header.source = ProxyEndpoint(address: source, port: c.uint16(at: block + 32))
                    header.destination = ProxyEndpoint(address: destination, port: c.uint16(at: block + 34))
                }
            case .unix, .unspec:
                break  // not an IP client: the connection's own addresses stand
            }
        }
        try readTLVs(c, from: block + family.addressBlockLength, to: total, into: &header)
        return (header, total)
    }

    /// The family/transport combinations §2.2 lists; nil for any other octet.
    static func listedFamily(_ octet: UInt8) -> (ProxyHeader.Family, ProxyHeader.TransportProtocol)? {
        guard let family = ProxyHeader.Family(rawValue: octet >> 4),
              let transport = ProxyHeader.TransportProtocol(rawValue: octet & 0x0F)
        else { return nil }
        // UNSPEC goes with UNSPEC only; a real family needs STREAM or DGRAM.
        guard (family == .unspec) == (transport == .unspec) else { return nil }
        return (family, transport)
    }

    /// Reads the TLVs in `start..<end` (all inside the input: the caller `require`d them).
    static func readTLVs(_ c: Cursor, from start: Int, to end: Int, into header: inout ProxyHeader) throws(Stop) {
        var seen: [UInt8] = []
        var crcValueOffset: Int?
        var offset = start
        while offset < end {
            // Type and length must fit, and so must the value they announce.
            guard end - offset >= 3 else { throw .invalid(.v2TLVOverrun) }
            let type = c.byte(at: offset)
            let length = Int(c.uint16(at: offset + 1))
            let value = (offset + 3)..<(offset + 3 + length)
            guard value.upperBound <= end else { throw .invalid(.v2TLVOverrun) }
            offset = value.upperBound
            switch type {
            case ProxyTLVType.alpn, ProxyTLVType.authority, ProxyTLVType.uniqueID, ProxyTLVType.netns,
                 ProxyTLVType.crc32c, ProxyTLVType.ssl:
                guard !seen.contains(type) else { throw .invalid(.v2BadTLV(type: type)) }
                seen.append(type)
            default:
                break  // NOOP, reserved and unknown types: skipped (§2.2)
            }
            switch type {
            case ProxyTLVType.alpn:
                header.alpn = c.bytes(value)
            case ProxyTLVType.authority:
                header.authority = c.bytes(value)
            case ProxyTLVType.uniqueID:
                guard length <= ProxyHeaderParser.maxUniqueIDLength else { throw .invalid(.v2BadTLV(type: type)) }
                header.uniqueID = c.bytes(value)
            case ProxyTLVType.netns:
                header.netns = c.bytes(value)
            case ProxyTLVType.crc32c:
                guard length == 4 else { throw .invalid(.v2BadTLV(type: type)) }
                crcValueOffset = value.lowerBound
            case ProxyTLVType.ssl:
                header.ssl = try readSSL(c, value)
            default:
                break
            }
        }
        if let crcValueOffset {
            // §2.2.3: CRC-32C of the whole header with the checksum field taken as zeros.
            var crc = CRC32C()
            crc.update(UnsafeRawBufferPointer(rebasing: c.input[0..<crcValueOffset]))
            crc.updateZeros(4)
            crc.update(UnsafeRawBufferPointer(rebasing: c.input[(crcValueOffset + 4)..<end]))
            guard crc.value == c.uint32(at: crcValueOffset) else { throw .invalid(.v2BadChecksum) }
            header.crcVerified = true
        }
    }

    /// The `PP2_TYPE_SSL` value (§2.2.6): client (1 octet), verify (4, BE), then sub-TLVs that
    /// must tile the rest of the value like the outer ones.
    static func readSSL(_ c: Cursor, _ value: Range<Int>) throws(Stop) -> ProxySSLInfo {
        guard value.count >= 5 else { throw .invalid(.v2BadTLV(type: ProxyTLVType.ssl)) }
        var ssl = ProxySSLInfo(client: c.byte(at: value.lowerBound), verify: c.uint32(at: value.lowerBound + 1))
        var offset = value.lowerBound + 5
        var seen: [UInt8] = []
        while offset < value.upperBound {
            guard value.upperBound - offset >= 3 else { throw .invalid(.v2TLVOverrun) }
            let type = c.byte(at: offset)
            let length = Int(c.uint16(at: offset + 1))
            let sub = (offset + 3)..<(offset + 3 + length)
            guard sub.upperBound <= value.upperBound else { throw .invalid(.v2TLVOverrun) }
            offset = sub.upperBound
            switch type {
            case ProxyTLVType.sslVersion, ProxyTLVType.sslCommonName, ProxyTLVType.sslCipher,
                 ProxyTLVType.sslSignatureAlgorithm, ProxyTLVType.sslKeyAlgorithm:
                guard !seen.contains(type) else { throw .invalid(.v2BadTLV(type: type)) }
                seen.append(type)
            default:
                continue  // unknown sub-TLV: skipped
            }
            let bytes = c.bytes(sub)
            switch type {
            case ProxyTLVType.sslVersion: ssl.version = bytes
            case ProxyTLVType.sslCommonName: ssl.commonName = bytes
            case ProxyTLVType.sslCipher: ssl.cipher = bytes
            case ProxyTLVType.sslSignatureAlgorithm: ssl.signatureAlgorithm = bytes
            default: ssl.keyAlgorithm = bytes
            }
        }
        return ssl
    }
}
