/// What a PROXY protocol header said (HAProxy's doc/proxy-protocol.txt, versions 1 and 2).
///
/// `source`/`destination` are set only for a `.proxy` command over IPv4 or IPv6 (v1 `TCP4`,
/// `TCP6`; v2 `AF_INET`, `AF_INET6`). They are nil for v1 `UNKNOWN`, v2 `LOCAL` (a health check
/// by the balancer itself, §2.2: use the real endpoints), v2 `AF_UNSPEC` and `AF_UNIX`: the
/// receiver then keeps the connection's own addresses.
///
/// Byte-string fields are kept as bytes (they are logged escaped and compared as bytes, never
/// as Swift `String`s).
public struct ProxyHeader: Hashable, Sendable {
    /// The header's version: v1 is the text line (§2.1), v2 the binary form (§2.2).
    public enum Version: Hashable, Sendable { case v1, v2 }

    /// v2 command nibble (§2.2); a v1 header is always `.proxy`.
    public enum Command: Hashable, Sendable {
        /// 0x0: the balancer's own connection (health check); addresses are not the client's.
        case local
        /// 0x1: relayed for a client; the addresses are the client's connection.
        case proxy
    }

    /// v2 address family (high nibble of the 14th octet, §2.2); v1 TCP4 = inet, TCP6 = inet6,
    /// UNKNOWN = unspec.
    public enum Family: UInt8, Hashable, Sendable {
        /// AF_UNSPEC (v1 UNKNOWN), AF_INET (v1 TCP4), AF_INET6 (v1 TCP6), AF_UNIX.
        case unspec = 0, inet = 1, inet6 = 2, unix = 3

        /// Octets of the address block this family needs (§2.2): 2×4 + 2×2, 2×16 + 2×2, 2×108.
        public var addressBlockLength: Int {
            switch self {
            case .unspec: return 0
            case .inet: return 12
            case .inet6: return 36
            case .unix: return 216
            }
        }
    }

    /// v2 transport protocol (low nibble of the 14th octet, §2.2); v1 TCP4/TCP6 = stream.
    public enum TransportProtocol: UInt8, Hashable, Sendable {
        /// UNSPEC, STREAM (TCP), DGRAM (UDP).
        case unspec = 0, stream = 1, datagram = 2
    }

    /// The version the header came in (or is to be sent in).
    public var version: Version
    /// LOCAL or PROXY (v2 command nibble, §2.2); always `.proxy` in a v1 header.
    public var command: Command
    /// The address family: v2 high nibble of the 14th octet, v1 TCP4/TCP6/UNKNOWN (§2.2).
    public var family: Family
    /// The transport: v2 low nibble of the 14th octet (§2.2); `.stream` for v1 TCP4/TCP6.
    public var transportProtocol: TransportProtocol
    /// The client's end (nil: keep the connection's peer address).
    public var source: ProxyEndpoint?
    /// The address the client connected to, on the balancer.
    public var destination: ProxyEndpoint?

    // v2 TLVs (§2.2.1-2.2.7); always nil in a v1 header.

    /// `PP2_TYPE_ALPN` (0x01): the ALPN protocol the client negotiated with the balancer.
    public var alpn: [UInt8]?
    /// `PP2_TYPE_AUTHORITY` (0x02): the host name the client asked for (TLS: its SNI).
    public var authority: [UInt8]?
    /// `PP2_TYPE_UNIQUE_ID` (0x05): the balancer's id of the connection, at most 128 octets.
    public var uniqueID: [UInt8]?
    /// `PP2_TYPE_SSL` (0x20) with its sub-TLVs.
    public var ssl: ProxySSLInfo?
    /// `PP2_TYPE_NETNS` (0x30): the network namespace's name.
    public var netns: [UInt8]?
    /// A `PP2_TYPE_CRC32C` (0x03) TLV was present and matched (a mismatch is `.invalid`).
    public var crcVerified: Bool

    /// A header from its fields; every field but `version` and `command` defaults to absent
    /// (`.unspec`, nil, `crcVerified` false).
    public init(version: Version, command: Command, family: Family = .unspec,
                transportProtocol: TransportProtocol = .unspec,
                source: ProxyEndpoint? = nil, destination: ProxyEndpoint? = nil,
                alpn: [UInt8]? = nil, authority: [UInt8]? = nil, uniqueID: [UInt8]? = nil,
                ssl: ProxySSLInfo? = nil, netns: [UInt8]? = nil, crcVerified: Bool = false) {
        self.version = version
        self.command = command
        self.family = family
        self.transportProtocol = transportProtocol
        self.source = source
        self.destination = destination
        self.alpn = alpn
        self.authority = authority
        self.uniqueID = uniqueID
        self.ssl = ssl
        self.netns = netns
        self.crcVerified = crcVerified
    }

    /// A `.proxy` header over TCP between two endpoints (the common case): v1 `TCP4`/`TCP6`,
    /// v2 `AF_INET`/`AF_INET6` + `STREAM`. If one end is IPv4 and the other IPv6, both are sent
    /// as IPv6 (the IPv4 one mapped, `::ffff:a.b.c.d`): a header carries one family.
    public static func tcp(version: Version, source: ProxyEndpoint, destination: ProxyEndpoint) -> ProxyHeader {
        var source = source
        var destination = destination
        if source.address.isIPv4 != destination.address.isIPv4 {
            source.address = source.address.mappedToIPv6
            destination.address = destination.address.mappedToIPv6
        }
        return ProxyHeader(version: version, command: .proxy, family: source.address.isIPv4 ? .inet : .inet6,
                           transportProtocol: .stream, source: source, destination: destination)
    }

    /// The client spoke SSL/TLS to the balancer: `PP2_TYPE_SSL` with `PP2_CLIENT_SSL` (§2.2.6).
    public var sslClient: Bool { ssl?.clientSSL ?? false }
    /// The TLS version the client used (`PP2_SUBTYPE_SSL_VERSION`, e.g. "TLSv1.3").
    public var sslVersion: [UInt8]? { ssl?.version }
    /// The SNI the client sent: the AUTHORITY TLV (§2.2.2).
    public var sni: [UInt8]? { authority }
}

/// The value of a `PP2_TYPE_SSL` TLV (§2.2.6): a client bit field, a verify result, then
/// sub-TLVs.
public struct ProxySSLInfo: Hashable, Sendable {
    /// `PP2_CLIENT_SSL`: the client connected over SSL/TLS.
    public static let clientSSLBit: UInt8 = 0x01
    /// `PP2_CLIENT_CERT_CONN`: it presented a certificate on this connection.
    public static let clientCertConnectionBit: UInt8 = 0x02
    /// `PP2_CLIENT_CERT_SESS`: it presented one at least once in this TLS session.
    public static let clientCertSessionBit: UInt8 = 0x04

    /// The `client` bit field.
    public var client: UInt8
    /// Zero when the client presented a certificate that was verified; non-zero otherwise.
    public var verify: UInt32
    /// `PP2_SUBTYPE_SSL_VERSION` (0x21): e.g. "TLSv1.3".
    public var version: [UInt8]?
    /// `PP2_SUBTYPE_SSL_CN` (0x22): the client certificate's Common Name.
    public var commonName: [UInt8]?
    /// `PP2_SUBTYPE_SSL_CIPHER` (0x23): e.g. "ECDHE-RSA-AES128-GCM-SHA256".
    public var cipher: [UInt8]?
    /// `PP2_SUBTYPE_SSL_SIG_ALG` (0x24): the frontend certificate's signature algorithm.
    public var signatureAlgorithm: [UInt8]?
    /// `PP2_SUBTYPE_SSL_KEY_ALG` (0x25): the frontend certificate's key algorithm.
    public var keyAlgorithm: [UInt8]?

    /// An SSL TLV value from its fields: `client` the bit field (`clientSSLBit` ...), `verify`
    /// zero when a client certificate was verified, the sub-TLVs nil when absent.
    public init(client: UInt8, verify: UInt32, version: [UInt8]? = nil, commonName: [UInt8]? = nil,
                cipher: [UInt8]? = nil, signatureAlgorithm: [UInt8]? = nil, keyAlgorithm: [UInt8]? = nil) {
        self.client = client
        self.verify = verify
        self.version = version
        self.commonName = commonName
        self.cipher = cipher
        self.signatureAlgorithm = signatureAlgorithm
        self.keyAlgorithm = keyAlgorithm
    }

    /// `PP2_CLIENT_SSL` is set in `client`: the client spoke SSL/TLS to the balancer (§2.2.6).
    public var clientSSL: Bool { client & Self.clientSSLBit != 0 }
}

/// TLV type numbers of proxy-protocol.txt §2.2.
public enum ProxyTLVType {
    /// `PP2_TYPE_ALPN` (§2.2.1).
    public static let alpn: UInt8 = 0x01
    /// `PP2_TYPE_AUTHORITY` (§2.2.2): the host name (SNI).
    public static let authority: UInt8 = 0x02
    /// `PP2_TYPE_CRC32C` (§2.2.3): 4 octets, CRC-32C of the whole header with this value zeroed.
    public static let crc32c: UInt8 = 0x03
    /// `PP2_TYPE_NOOP` (§2.2.4): padding, skipped.
    public static let noop: UInt8 = 0x04
    /// `PP2_TYPE_UNIQUE_ID` (§2.2.5): at most 128 octets.
    public static let uniqueID: UInt8 = 0x05
    /// `PP2_TYPE_SSL` (§2.2.6): client bits, verify result, sub-TLVs.
    public static let ssl: UInt8 = 0x20
    /// `PP2_SUBTYPE_SSL_VERSION` (§2.2.6), inside `PP2_TYPE_SSL`.
    public static let sslVersion: UInt8 = 0x21
    /// `PP2_SUBTYPE_SSL_CN` (§2.2.6), inside `PP2_TYPE_SSL`.
    public static let sslCommonName: UInt8 = 0x22
    /// `PP2_SUBTYPE_SSL_CIPHER` (§2.2.6), inside `PP2_TYPE_SSL`.
    public static let sslCipher: UInt8 = 0x23
    /// `PP2_SUBTYPE_SSL_SIG_ALG` (§2.2.6), inside `PP2_TYPE_SSL`.
    public static let sslSignatureAlgorithm: UInt8 = 0x24
    /// `PP2_SUBTYPE_SSL_KEY_ALG` (§2.2.6), inside `PP2_TYPE_SSL`.
    public static let sslKeyAlgorithm: UInt8 = 0x25
    /// `PP2_TYPE_NETNS` (§2.2.7): the network namespace's name.
    public static let netns: UInt8 = 0x30
}

/// Why a header was refused. The receiver closes the connection on any of these (§2.1: "Any
/// sequence which does not exactly match the protocol must be discarded and cause the receiver
/// to abort the connection"); `description` is for the log line.
public enum ProxyHeaderError: Hashable, Sendable, Error, CustomStringConvertible {
    /// The first octets start neither "PROXY " (v1) nor the 12-octet v2 signature.
    case notProxyProtocol
    /// v1: no CRLF within `ProxyHeaderParser.maxV1Length` octets.
    case v1TooLong
    /// v1: a CR not followed by LF, or an LF without its CR (§2.1 forbids either as the end).
    case v1BadLineEnd
    /// v1: the protocol is not TCP4, TCP6 or UNKNOWN.
    case v1BadProtocol
    /// v1: a field is missing or empty, or the separators are not single spaces.
    case v1BadSyntax
    /// v1: an address is not a strict dotted quad (TCP4) or IPv6 text (TCP6).
    case v1BadAddress
    /// v1: a port is not decimal 0...65535 without leading zeros.
    case v1BadPort
    /// v2: the version nibble is not 2.
    case v2BadVersion(UInt8)
    /// v2: the command nibble is neither LOCAL (0) nor PROXY (1).
    case v2BadCommand(UInt8)
    /// v2: an undefined family or transport nibble, or a combination §2.2 does not list.
    case v2BadFamily(UInt8)
    /// v2: the header (16 + length field) is longer than the parser accepts.
    case v2TooLong(Int)
    /// v2: the length field is shorter than the family's address block.
    case v2AddressTooShort(family: UInt8, length: Int)
    /// v2: a TLV (or SSL sub-TLV) runs past the end of its container, or bytes too few for a
    /// TLV are left over.
    case v2TLVOverrun
    /// v2: a TLV of a known type has an impossible value (CRC32C not 4 octets, SSL shorter than
    /// 5, UNIQUE_ID over 128) or appears twice.
    case v2BadTLV(type: UInt8)
    /// v2: the CRC32C TLV does not match the header.
    case v2BadChecksum

    /// One line for the log, e.g. `v2 CRC32C mismatch`.
    public var description: String {
        switch self {
        case .notProxyProtocol: return "not a PROXY protocol header"
        case .v1TooLong: return "v1 header without CRLF in \(ProxyHeaderParser.maxV1Length) octets"
        case .v1BadLineEnd: return "v1 header with a bare CR or LF"
        case .v1BadProtocol: return "v1 protocol not TCP4, TCP6 or UNKNOWN"
        case .v1BadSyntax: return "v1 header with a missing field or a bad separator"
        case .v1BadAddress: return "v1 address malformed or out of range"
        case .v1BadPort: return "v1 port not decimal 0-65535"
        case .v2BadVersion(let v): return "v2 version \(v), not 2"
        case .v2BadCommand(let c): return "v2 command \(c), not LOCAL or PROXY"
        case .v2BadFamily(let f): return "v2 family/transport octet \(f) undefined"
        case .v2TooLong(let n): return "v2 header of \(n) octets, over the limit"
        case .v2AddressTooShort(let f, let n): return "v2 address length \(n) too short for family octet \(f)"
        case .v2TLVOverrun: return "v2 TLV runs past the header end"
        case .v2BadTLV(let t): return "v2 TLV type \(t) malformed or repeated"
        case .v2BadChecksum: return "v2 CRC32C mismatch"
        }
    }
}

/// What `ProxyHeaderParser.parse` found at the front of the input.
public enum ProxyParseResult: Hashable, Sendable {
    /// The input so far is a valid prefix of a header: read more and call again.
    case needMore
    /// A complete header; the first `consumed` octets are the header and everything after them
    /// belongs to the application (the first command, or the TLS ClientHello).
    case header(ProxyHeader, consumed: Int)
    /// Not a valid header (and no further byte can make it one): close the connection.
    case invalid(ProxyHeaderError)
}
