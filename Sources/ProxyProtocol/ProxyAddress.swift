/// An IP address as a PROXY header carries it: IPv4 (4 octets) or IPv6 (16 octets), in the
/// value order of network byte order (the first octet is the most significant).
///
/// Its own type because this module imports nothing (the glue converts it to its `IPAddress`
/// from `bytes`). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) stays IPv6 here: the header
/// said TCP6/AF_INET6, and folding it into IPv4 is the consumer's rule, not the wire's.
public enum ProxyAddress: Hashable, Sendable, CustomStringConvertible {
    /// IPv4, the address as an integer (the first octet most significant).
    case v4(UInt32)
    /// IPv6, octets 0-7 in `high`, 8-15 in `low` (the first octet most significant).
    case v6(high: UInt64, low: UInt64)

    /// From network-order octets: 4 (IPv4) or 16 (IPv6); nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        switch bytes.count {
        case 4:
            self = .v4(bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        case 16:
            var high: UInt64 = 0
            var low: UInt64 = 0
            for (index, byte) in bytes.enumerated() {
                if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
            }
            self = .v6(high: high, low: low)
        default:
            return nil
        }
    }

    /// From text: strict dotted quad (`192.0.2.1`, no leading zeros) or IPv6 text
    /// (`2001:db8::1`, `::ffff:192.0.2.1`); nil otherwise. The syntax is the one the v1 header
    /// accepts (proxy-protocol.txt §2.1), see `ProxyText`.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        if utf8.contains(UInt8(ascii: ":")) {
            guard let (high, low) = ProxyText.parseIPv6(utf8[...]) else { return nil }
            self = .v6(high: high, low: low)
        } else {
            guard let value = ProxyText.parseIPv4(utf8[...]) else { return nil }
            self = .v4(value)
        }
    }

    /// Network-order octets: 4 or 16.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a):
            return [UInt8(truncatingIfNeeded: a >> 24), UInt8(truncatingIfNeeded: a >> 16),
                    UInt8(truncatingIfNeeded: a >> 8), UInt8(truncatingIfNeeded: a)]
        case .v6(let high, let low):
            var out: [UInt8] = []
            out.reserveCapacity(16)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: high >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
            return out
        }
    }

    /// True for `.v4`; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is `.v6` and false.
    public var isIPv4: Bool {
        if case .v4 = self { return true }
        return false
    }

    /// The IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) of an IPv4 address;
    /// an IPv6 address unchanged. A v2 header has one family for both ends, so a sender with
    /// one IPv4 and one IPv6 end sends both as IPv6 (as HAProxy does).
    public var mappedToIPv6: ProxyAddress {
        switch self {
        case .v4(let a): return .v6(high: 0, low: 0xffff_0000_0000 | UInt64(a))
        case .v6: return self
        }
    }

    /// Dotted quad, or RFC 5952 text (lower case, longest run of two or more zero groups
    /// compressed to `::`): the form a v1 header carries.
    public var description: String { String(decoding: ProxyText.format(self), as: UTF8.self) }
}

/// One end of a proxied connection: address and TCP/UDP port.
public struct ProxyEndpoint: Hashable, Sendable, CustomStringConvertible {
    /// The address (IPv4 or IPv6, as the header's family says).
    public var address: ProxyAddress
    /// The TCP/UDP port, host order.
    public var port: UInt16

    /// An endpoint of `address` and `port` (host order).
    public init(address: ProxyAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// `192.0.2.1:110` or `[2001:db8::1]:110`.
    public var description: String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}
