import Glibc

/// A client address as penalties and trusted networks see it. IPv4-mapped
/// IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports for an
/// IPv4 client) are stored as IPv4 so one rule covers both forms.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// IPv4, the address as an integer (the first octet most significant).
    case v4(UInt32)
    /// IPv6 (never IPv4-mapped), octets 0-7 in `high`, 8-15 in `low` (the first most significant).
    case v6(high: UInt64, low: UInt64)

    /// From network-order bytes: 4 (IPv4) or 16 (IPv6); nil for other lengths.
    public init?(bytes: some Collection<UInt8>) {
        let b = Array(bytes)
        switch b.count {
        case 4:
            self = .v4(b.reduce(0) { $0 << 8 | UInt32($1) })
        case 16:
            let high = b[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let low = b[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            if high == 0 && low >> 32 == 0xffff {
                self = .v4(UInt32(truncatingIfNeeded: low))
            } else {
                self = .v6(high: high, low: low)
            }
        default:
            return nil
        }
    }

    /// From text (`192.0.2.1`, `2001:db8::1`, `::ffff:192.0.2.1`) via inet_pton,
    /// the same parser the kernel's tools use; nil if it is not an address.
    public init?(_ text: String) {
        var buf = [UInt8](repeating: 0, count: 16)
        if text.contains(":") {
            guard inet_pton(AF_INET6, text, &buf) == 1 else { return nil }
            self.init(bytes: buf)
        } else {
            guard inet_pton(AF_INET, text, &buf) == 1 else { return nil }
            self.init(bytes: buf[0..<4])
        }
    }

    /// From a `sockaddr_in`/`sockaddr_in6` as accept4 or getpeername fill it.
    public init?(sockaddr pointer: UnsafeRawPointer, length: Int) {
        guard length >= MemoryLayout<sa_family_t>.size else { return nil }
        let family = pointer.loadUnaligned(as: sa_family_t.self)
        if Int32(family) == AF_INET, length >= MemoryLayout<sockaddr_in>.size {
            let sin = pointer.loadUnaligned(as: sockaddr_in.self)
            self = .v4(UInt32(bigEndian: sin.sin_addr.s_addr))
        } else if Int32(family) == AF_INET6, length >= MemoryLayout<sockaddr_in6>.size {
            let sin6 = pointer.loadUnaligned(as: sockaddr_in6.self)
            let bytes = withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
            self.init(bytes: bytes)
        } else {
            return nil
        }
    }

    /// Dotted quad for IPv4; inet_ntop(3) text for IPv6 (lower case, the longest run of zero groups as
    /// `::`), `?` if inet_ntop fails.
    public var description: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\(a >> 16 & 0xff).\(a >> 8 & 0xff).\(a & 0xff)"
        case .v6(let high, let low):
            var bytes = [UInt8](repeating: 0, count: 16)
            for i in 0..<8 {
                bytes[i] = UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * i))
                bytes[8 + i] = UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * i))
            }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, bytes, &text, socklen_t(text.count)) != nil else { return "?" }
            return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}

/// A network in CIDR notation: `10.0.0.0/8`, `::1/128`; a bare address is a
/// host route (/32 or /128). Host bits below the prefix are ignored
/// (`10.1.2.3/8` is `10.0.0.0/8`), as in most firewall syntaxes.
/// `::ffff:a.b.c.d/n` with n >= 96 becomes the IPv4 network `/n-96`.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    /// The network address, host bits below `prefixLength` cleared.
    public let network: IPAddress
    /// Leading bits that must match: 0...32 for IPv4, 0...128 for IPv6.
    public let prefixLength: Int

    /// Parses `address/prefix` or a bare address (a /32 or /128 host route); nil when the address
    /// is not one inet_pton(3) takes, the prefix is not 1-3 decimal digits or is out of range, or
    /// an IPv4-mapped IPv6 network has a prefix under 96.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let isV6Text = parts[0].contains(":")
        guard let address = IPAddress(String(parts[0])) else { return nil }
        var length: Int
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].allSatisfy(\.isASCII), parts[1].allSatisfy(\.isNumber),
                  parts[1].count <= 3, let n = Int(parts[1]) else { return nil }
            length = n
        } else {
            length = isV6Text ? 128 : 32
        }
        if case .v4 = address, isV6Text {
            // Mapped form was normalized to IPv4: translate the prefix too.
            guard length >= 96 else { return nil }
            length -= 96
        }
        self.init(network: address, prefixLength: length)
    }

    /// The network of `network` masked to `prefixLength` bits; nil when the length is outside
    /// 0...32 (IPv4) or 0...128 (IPv6).
    public init?(network: IPAddress, prefixLength: Int) {
        switch network {
        case .v4(let a):
            guard (0...32).contains(prefixLength) else { return nil }
            self.network = .v4(a & CIDR.mask32(prefixLength))
        case .v6(let high, let low):
            guard (0...128).contains(prefixLength) else { return nil }
            let (mh, ml) = CIDR.mask128(prefixLength)
            self.network = .v6(high: high & mh, low: low & ml)
        }
        self.prefixLength = prefixLength
    }

    /// True when `address` has this network's leading `prefixLength` bits; an IPv4 address is
    /// never in an IPv6 network nor the other way round (mapped addresses are already IPv4).
    public func contains(_ address: IPAddress) -> Bool {
        switch (network, address) {
        case (.v4(let n), .v4(let a)):
            return a & CIDR.mask32(prefixLength) == n
        case (.v6(let nh, let nl), .v6(let ah, let al)):
            let (mh, ml) = CIDR.mask128(prefixLength)
            return ah & mh == nh && al & ml == nl
        default:
            return false
        }
    }

    /// `network/prefixLength`, e.g. `10.0.0.0/8`.
    public var description: String { "\(network)/\(prefixLength)" }

    static func mask32(_ n: Int) -> UInt32 { n == 0 ? 0 : UInt32.max << UInt32(32 - n) }

    static func mask128(_ n: Int) -> (UInt64, UInt64) {
        if n <= 64 { return (n == 0 ? 0 : UInt64.max << UInt64(64 - n), 0) }
        return (UInt64.max, n == 128 ? UInt64.max : UInt64.max << UInt64(128 - n))
    }
}

/// A set of networks (`--trusted-network`, repeatable). Linear scan: the list
/// is a handful of operator-written entries.
public struct CIDRTable: Sendable {
    /// The networks, in configuration order.
    public let networks: [CIDR]

    /// A table of `networks` as given (use `parse` for operator text).
    public init(_ networks: [CIDR]) { self.networks = networks }

    /// Parses every string; returns the ones that are not CIDRs so the caller
    /// can refuse to start with a typo in its trust list.
    public static func parse(_ texts: [String]) -> (CIDRTable, invalid: [String]) {
        var nets: [CIDR] = [], bad: [String] = []
        for t in texts {
            if let c = CIDR(t) { nets.append(c) } else { bad.append(t) }
        }
        return (CIDRTable(nets), bad)
    }

    /// True when any network contains `address` (linear scan).
    public func contains(_ address: IPAddress) -> Bool { networks.contains { $0.contains(address) } }
}
