import ByteCodec

/// A TLV to append to a v2 header as is (type and value), for types `ProxyHeader` has no field
/// for: NOOP padding, custom or experimental ranges (§2.2.4, §2.2.8), or deliberately odd ones
/// in tests.
public struct ProxyTLV: Hashable, Sendable {
    /// The TLV type octet (`ProxyTLVType` or any other value).
    public var type: UInt8
    /// The value, sent as is; its length goes in the TLV's 2-octet length field (a header over
    /// 65,535 octets after the fixed part makes `ProxyHeaderEncoder.v2` return nil).
    public var value: [UInt8]

    /// A TLV of `type` carrying `value`.
    public init(type: UInt8, value: [UInt8]) {
        self.type = type
        self.value = value
    }
}

/// Builds PROXY headers (the sending side, used by pop3bench and the tests): v1 text (§2.1)
/// and v2 binary (§2.2) with the TLVs the header's fields name, extra TLVs, and an optional
/// CRC32C (§2.2.3).
public enum ProxyHeaderEncoder {
    /// The v1 line, CRLF included: `PROXY TCP4|TCP6 src dst sport dport\r\n` for a `.proxy`
    /// header with IPv4 or IPv6 endpoints of one family, `PROXY UNKNOWN\r\n` for any other
    /// header (v1 has no LOCAL, no UDP, no AF_UNIX and no TLVs; those fields are not sent).
    /// At most 104 octets.
    public static func v1(_ header: ProxyHeader) -> [UInt8] {
        var out = ProxyHeaderParser.v1Prefix
        guard header.command == .proxy, let source = header.source, let destination = header.destination,
              source.address.isIPv4 == destination.address.isIPv4,
              header.transportProtocol != .datagram
        else {
            out += Array("UNKNOWN\r\n".utf8)
            return out
        }
        out += source.address.isIPv4 ? V1.tcp4 : V1.tcp6
        out.append(V1.space)
        out += ProxyText.format(source.address)
        out.append(V1.space)
        out += ProxyText.format(destination.address)
        out.append(V1.space)
        out.appendDecimal(source.port)
        out.append(V1.space)
        out.appendDecimal(destination.port)
        out += [V1.cr, V1.lf]
        return out
    }

    /// The v2 header: signature, version 2 and the command, the family/transport octet from
    /// the header (for `.proxy` with endpoints: `inet`/`inet6` by their address, which must be
    /// of one family; otherwise AF_UNSPEC/UNSPEC and no address block), then the TLVs for the
    /// fields that are set (ALPN, AUTHORITY, UNIQUE_ID, SSL with its sub-TLVs, NETNS), then
    /// `extra`, then, with `crc`, a CRC32C TLV computed over the result (§2.2.3).
    ///
    /// Nil when the header cannot be encoded: endpoints of two families, or more than 65,535
    /// octets after the fixed part.
    public static func v2(_ header: ProxyHeader, extra: [ProxyTLV] = [], crc: Bool = false) -> [UInt8]? {
        var out = ProxyHeaderParser.v2Signature
        out.append(0x20 | (header.command == .proxy ? 1 : 0))
        var body: [UInt8] = []
        if header.command == .proxy, let source = header.source, let destination = header.destination {
            guard source.address.isIPv4 == destination.address.isIPv4 else { return nil }
            let family: ProxyHeader.Family = source.address.isIPv4 ? .inet : .inet6
            let transport: ProxyHeader.TransportProtocol = header.transportProtocol == .datagram ? .datagram : .stream
            out.append(family.rawValue << 4 | transport.rawValue)
            body += source.address.bytes
            body += destination.address.bytes
            appendUInt16(source.port, to: &body)
            appendUInt16(destination.port, to: &body)
        } else {
            out.append(0x00)
        }
        if let alpn = header.alpn { appendTLV(ProxyTLVType.alpn, alpn, to: &body) }
        if let authority = header.authority { appendTLV(ProxyTLVType.authority, authority, to: &body) }
        if let uniqueID = header.uniqueID { appendTLV(ProxyTLVType.uniqueID, uniqueID, to: &body) }
        if let ssl = header.ssl {
            var value: [UInt8] = [ssl.client]
            appendUInt32(ssl.verify, to: &value)
            if let v = ssl.version { appendTLV(ProxyTLVType.sslVersion, v, to: &value) }
            if let v = ssl.commonName { appendTLV(ProxyTLVType.sslCommonName, v, to: &value) }
            if let v = ssl.cipher { appendTLV(ProxyTLVType.sslCipher, v, to: &value) }
            if let v = ssl.signatureAlgorithm { appendTLV(ProxyTLVType.sslSignatureAlgorithm, v, to: &value) }
            if let v = ssl.keyAlgorithm { appendTLV(ProxyTLVType.sslKeyAlgorithm, v, to: &value) }
            appendTLV(ProxyTLVType.ssl, value, to: &body)
        }
        if let netns = header.netns { appendTLV(ProxyTLVType.netns, netns, to: &body) }
        for tlv in extra { appendTLV(tlv.type, tlv.value, to: &body) }
        var crcOffset: Int?
        if crc {
            crcOffset = ProxyHeaderParser.v2FixedLength + body.count + 3
            appendTLV(ProxyTLVType.crc32c, [0, 0, 0, 0], to: &body)
        }
        guard body.count <= 0xFFFF else { return nil }
        appendUInt16(UInt16(body.count), to: &out)
        out += body
        if let crcOffset {
            let value = CRC32C.checksum(out)  // the field is still zero
            out[crcOffset] = UInt8(truncatingIfNeeded: value >> 24)
            out[crcOffset + 1] = UInt8(truncatingIfNeeded: value >> 16)
            out[crcOffset + 2] = UInt8(truncatingIfNeeded: value >> 8)
            out[crcOffset + 3] = UInt8(truncatingIfNeeded: value)
        }
        return out
    }

    static func appendTLV(_ type: UInt8, _ value: [UInt8], to out: inout [UInt8]) {
        out.append(type)
        // A value over 65,535 octets is cut at the length field's range; the whole header is then
        // over the limit anyway and `v2` returns nil.
        appendUInt16(UInt16(clamping: value.count), to: &out)
        out += value.prefix(0xFFFF)
    }

    static func appendUInt16(_ value: UInt16, to out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: value >> 8))
        out.append(UInt8(truncatingIfNeeded: value))
    }

    static func appendUInt32(_ value: UInt32, to out: inout [UInt8]) {
        appendUInt16(UInt16(truncatingIfNeeded: value >> 16), to: &out)
        appendUInt16(UInt16(truncatingIfNeeded: value), to: &out)
    }
}
