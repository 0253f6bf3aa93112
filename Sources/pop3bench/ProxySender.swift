import ProxyProtocol
import Reactor

/// One source a PROXY header may claim: an address, and a port or nil (then the port changes
/// from connection to connection, as a real client's ephemeral port would).
struct ProxySource: Equatable {
    var address: ProxyAddress
    var port: UInt16?
}

/// `--proxy-v1`/`--proxy-v2`: every connection starts with a PROXY protocol header (HAProxy's
/// doc/proxy-protocol.txt) claiming one of `sources` as the client, so one machine can appear
/// as many clients, and the benchmark reaches pop3d the way HAProxy's `send-proxy`/
/// `send-proxy-v2` do. The header is queued right after connect, before anything else the
/// session writes and before a TLS transport is installed (implicit TLS: the ClientHello
/// follows it), so the session code never sees it.
struct ProxySending {
    /// Most sources one run may claim (a range expands to this many at most).
    static let maxSources = 65_536
    /// Ports used when a source gives none: connection k claims `firstPort + k % portCount`.
    static let firstPort = 1024
    static let portCount = 65536 - 1024

    var version: ProxyHeader.Version
    var sources: [ProxySource]
    /// v2: add `PP2_TYPE_SSL` with the client-connected-over-TLS bit and version "TLSv1.3"
    /// (what HAProxy's `send-proxy-v2-ssl` sends for a TLS client).
    var ssl: Bool
    /// v2: add a `PP2_TYPE_CRC32C` TLV.
    var crc: Bool

    /// The header for the `sessionNumber`-th session (sources are taken in turn), towards
    /// `target` (the destination it names: what the client connected to).
    func header(sessionNumber: Int, target: SocketAddress) -> [UInt8] {
        let source = sources[sessionNumber % sources.count]
        let port = source.port ?? UInt16(truncatingIfNeeded: Self.firstPort + sessionNumber % Self.portCount)
        let destinationAddress = ProxyAddress(bytes: target.addressBytes) ?? .v4(0x7F00_0001)
        var header = ProxyHeader.tcp(version: version, source: ProxyEndpoint(address: source.address, port: port),
                                     destination: ProxyEndpoint(address: destinationAddress, port: target.port))
        switch version {
        case .v1:
            return ProxyHeaderEncoder.v1(header)
        case .v2:
            if ssl { header.ssl = ProxySSLInfo(client: ProxySSLInfo.clientSSLBit, verify: 0, version: Array("TLSv1.3".utf8)) }
            // Cannot fail: two addresses of one family and a few dozen TLV octets.
            return ProxyHeaderEncoder.v2(header, crc: crc) ?? []
        }
    }

    /// Parses `--proxy-source` values: `ADDR`, `ADDR:PORT`, `[IPV6]`, `[IPV6]:PORT`, a bare
    /// IPv6 address, or an IPv4 range `A-B` (either may carry `:PORT`), all addresses taken in
    /// order. Throws a message naming the value.
    static func parseSources(_ values: [String]) throws(ProxySourceError) -> [ProxySource] {
        var sources: [ProxySource] = []
        for value in values {
            var host = Substring(value)
            var port: UInt16?
            if host.hasPrefix("[") {
                guard let close = host.firstIndex(of: "]") else { throw ProxySourceError(value, "unclosed [") }
                let rest = host[host.index(after: close)...]
                host = host[host.index(after: host.startIndex)..<close]
                if !rest.isEmpty {
                    guard rest.hasPrefix(":"), let p = parsePort(rest.dropFirst()) else { throw ProxySourceError(value, "bad port") }
                    port = p
                }
            } else if host.filter({ $0 == ":" }).count == 1, let colon = host.firstIndex(of: ":") {
                guard let p = parsePort(host[host.index(after: colon)...]) else { throw ProxySourceError(value, "bad port") }
                port = p
                host = host[..<colon]
            }
            let ends = host.split(separator: "-", omittingEmptySubsequences: false)
            guard ends.count <= 2 else { throw ProxySourceError(value, "a range is A-B") }
            guard let first = ProxyAddress(String(ends[0])) else { throw ProxySourceError(value, "not an IP address") }
            guard ends.count == 2 else {
                sources.append(ProxySource(address: first, port: port))
                guard sources.count <= maxSources else { throw ProxySourceError(value, "more than \(maxSources) sources") }
                continue
            }
            guard case .v4(let low) = first, let last = ProxyAddress(String(ends[1])), case .v4(let high) = last, low <= high else {
                throw ProxySourceError(value, "a range needs two IPv4 addresses, low to high")
            }
            guard Int(high - low) < maxSources - sources.count else {
                throw ProxySourceError(value, "more than \(maxSources) sources")
            }
            for a in low...high { sources.append(ProxySource(address: .v4(a), port: port)) }
        }
        return sources
    }

    private static func parsePort(_ text: Substring) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt16(text)
    }
}

/// A `--proxy-source` value that does not parse.
struct ProxySourceError: Error, CustomStringConvertible {
    let description: String
    init(_ value: String, _ why: String) { description = "--proxy-source \(value): \(why)" }
}
