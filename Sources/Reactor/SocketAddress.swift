import CShim
import Glibc

/// An IPv4 or IPv6 address with a port, stored inline (no heap) so every connection can carry one.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// The address family: AF_INET or AF_INET6.
    public enum Family: Sendable, Hashable {
        /// AF_INET.
        case ipv4
        /// AF_INET6.
        case ipv6
    }

    /// IPv4 or IPv6.
    public let family: Family
    /// The port, host order.
    public let port: UInt16
    /// Address bytes in network order: 4 used for IPv4, 16 for IPv6.
    private let high: UInt64
    private let low: UInt64

    /// Parses "127.0.0.1:1110" or "[::1]:1110". Returns nil on anything else.
    public init?(parsing text: String) {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }  // bare IPv6 needs brackets
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = UInt16(portText)
        else { return nil }
        if host == "localhost" { host = "127.0.0.1" }
        guard let address = SocketAddress(ip: String(host), port: port) else { return nil }
        self = address
    }

    /// Parses a bare IPv4 or IPv6 literal (no brackets) with a port.
    public init?(ip: String, port: UInt16) {
        var bytes = (UInt64(0), UInt64(0))
        let family: Family
        let ok: Bool = withUnsafeMutableBytes(of: &bytes) { raw in
            if ip.contains(":") {
                return inet_pton(AF_INET6, ip, raw.baseAddress) == 1
            }
            return inet_pton(AF_INET, ip, raw.baseAddress) == 1
        }
        guard ok else { return nil }
        family = ip.contains(":") ? .ipv6 : .ipv4
        self.init(family: family, port: port, high: bytes.0, low: bytes.1)
    }

    private init(family: Family, port: UInt16, high: UInt64, low: UInt64) {
        self.family = family
        self.port = port
        self.high = high
        self.low = low
    }

    /// Reads a kernel sockaddr (from accept/getsockname); nil for families other than AF_INET/AF_INET6.
    public init?(storage: sockaddr_storage) {
        var storage = storage
        let family = Int32(storage.ss_family)
        let parsed: SocketAddress? = withUnsafeBytes(of: &storage) { raw in
            switch family {
            case AF_INET:
                let sin = raw.load(as: sockaddr_in.self)
                var bytes = (UInt64(0), UInt64(0))
                withUnsafeMutableBytes(of: &bytes) { out in
                    withUnsafeBytes(of: sin.sin_addr) { out.copyMemory(from: $0) }
                }
                return SocketAddress(family: .ipv4, port: UInt16(bigEndian: sin.sin_port), high: bytes.0, low: bytes.1)
            case AF_INET6:
                let sin6 = raw.load(as: sockaddr_in6.self)
                var bytes = (UInt64(0), UInt64(0))
                withUnsafeMutableBytes(of: &bytes) { out in
                    withUnsafeBytes(of: sin6.sin6_addr) { out.copyMemory(from: $0) }
                }
                return SocketAddress(family: .ipv6, port: UInt16(bigEndian: sin6.sin6_port), high: bytes.0, low: bytes.1)
            default:
                return nil
            }
        }
        guard let parsed else { return nil }
        self = parsed
    }

    /// The raw address bytes in network order (4 or 16), for per-IP limits and CIDR checks elsewhere.
    public var addressBytes: [UInt8] {
        withUnsafeBytes(of: (high, low)) { raw in
            Array(raw.prefix(family == .ipv4 ? 4 : 16))
        }
    }

    /// The address without the port, with IPv4-mapped IPv6 left as the kernel gave it.
    public var ipString: String {
        var bytes = (high, low)
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let af = family == .ipv4 ? AF_INET : AF_INET6
        let ok = withUnsafeBytes(of: &bytes) { raw in
            text.withUnsafeMutableBufferPointer { out in
                inet_ntop(af, raw.baseAddress, out.baseAddress, socklen_t(out.count)) != nil
            }
        }
        guard ok else { return "?" }
        return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `127.0.0.1:110` or `[::1]:110` (inet_ntop(3) text).
    public var description: String {
        family == .ipv4 ? "\(ipString):\(port)" : "[\(ipString)]:\(port)"
    }

    /// Appends `description`'s octets to `out` without building a `String` (inet_ntop into
    /// a stack buffer): the session-end log line, written once per session.
    public func appendDescription(to out: inout [UInt8]) {
        var bytes = (high, low)
        // 48 octets hold INET6_ADDRSTRLEN (46, the longest text inet_ntop writes, NUL included).
        var text: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
        let af = family == .ipv4 ? AF_INET : AF_INET6
        if family == .ipv6 { out.append(UInt8(ascii: "[")) }
        withUnsafeBytes(of: &bytes) { raw in
            if family == .ipv4 {
                // Dotted decimal by hand: glibc's inet_ntop formats IPv4 with sprintf (some
                // 2k instructions, once per session).
                for i in 0..<4 {
                    if i > 0 { out.append(UInt8(ascii: ".")) }
                    let octet = raw[i]
                    if octet >= 100 { out.append(UInt8(ascii: "0") + octet / 100) }
                    if octet >= 10 { out.append(UInt8(ascii: "0") + octet / 10 % 10) }
                    out.append(UInt8(ascii: "0") + octet % 10)
                }
                return
            }
            withUnsafeMutableBytes(of: &text) { buffer in
                if let base = buffer.baseAddress,
                   inet_ntop(af, raw.baseAddress, base.assumingMemoryBound(to: CChar.self), socklen_t(buffer.count)) != nil {
                    out.append(contentsOf: UnsafeRawBufferPointer(start: base, count: strlen(base.assumingMemoryBound(to: CChar.self))))
                } else {
                    out.append(UInt8(ascii: "?"))
                }
            }
        }
        if family == .ipv6 { out.append(UInt8(ascii: "]")) }
        out.append(UInt8(ascii: ":"))
        // The port in decimal, at most 5 digits.
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0, 0)
        var count = 0
        var rest = port
        withUnsafeMutableBytes(of: &digits) { d in
            repeat {
                d[4 - count] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest % 10)
                rest /= 10
                count += 1
            } while rest > 0
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: d[(5 - count)...]))
        }
    }

    /// The same address with another port (binding port 0 then reading the real port).
    public func withPort(_ port: UInt16) -> SocketAddress {
        SocketAddress(family: family, port: port, high: high, low: low)
    }

    var addressFamily: Int32 { family == .ipv4 ? AF_INET : AF_INET6 }

    /// Calls body with a kernel sockaddr for bind/connect.
    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var bytes = (high, low)
        switch family {
        case .ipv4:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeBytes(of: &bytes) { raw in
                withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw.prefix(4))) }
            }
            return try withUnsafePointer(to: &sin) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .ipv6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeBytes(of: &bytes) { raw in
                withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyMemory(from: raw) }
            }
            return try withUnsafePointer(to: &sin6) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }

    /// The local address of a socket (getsockname).
    public static func local(of fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        return SocketAddress(storage: storage)
    }
}
