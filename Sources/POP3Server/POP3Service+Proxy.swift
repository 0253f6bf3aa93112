import Auth
import Glibc
import Logging
import ProxyProtocol
import Reactor

// The receiving side of the PROXY protocol (HAProxy's doc/proxy-protocol.txt, v1 and v2).
//
// Where it lives: the Reactor reads the header as a generic "preamble" (Connection+Preamble.
// swift: peek, parse, take exactly the header from the kernel, so that what follows, the first
// command or a TLS ClientHello, is read by the real transport); this file supplies the parser
// (the pure `ProxyHeaderParser`) and decides what the header means. The Reactor does not
// import ProxyProtocol; the glue does.
//
// Only a peer in `proxy_networks` is asked for a header, and it must send one: a header from
// anywhere else closes that connection (Session: it never changes an address), and a balancer's
// connection without a valid header is closed with nothing sent.

/// What a connection's PROXY header said, as the session uses it.
struct ProxiedClient {
    /// The header (addresses, command, TLVs).
    let header: ProxyHeader
    /// The balancer: the socket's own peer.
    let balancer: SocketAddress

    /// v2 LOCAL: the balancer's own connection (a health check), not a client's.
    var isHealthCheck: Bool { header.command == .local }

    /// The client's address for every rule: the header's source; nil for a health check
    /// (not counted anywhere); nil too for UNKNOWN / AF_UNSPEC / AF_UNIX, where the caller
    /// keeps the balancer's address.
    var clientAddress: IPAddress? {
        guard !isHealthCheck, let source = header.source else { return nil }
        return IPAddress(bytes: source.address.bytes)
    }

    /// The address the client connected to (on the balancer), for the "client == server"
    /// rule of `disable_plaintext_auth`; nil when the header names none, so a balancer on
    /// this host never makes its connections "secured" by being local.
    var serverAddress: IPAddress? {
        guard !isHealthCheck, header.source != nil, let destination = header.destination else { return nil }
        return IPAddress(bytes: destination.address.bytes)
    }

    /// The client spoke TLS to the balancer (v2 PP2_TYPE_SSL with PP2_CLIENT_SSL, §2.2.6).
    var clientUsedTLS: Bool { !isHealthCheck && header.sslClient }

    /// "client" in log lines: the header's source endpoint, or the balancer's when it gave none.
    var clientName: String {
        if !isHealthCheck, let source = header.source {
            // IPv4-mapped sources are shown as IPv4, as the rules see them.
            if let address = IPAddress(bytes: source.address.bytes), case .v4 = address, !source.address.isIPv4 {
                return "\(address):\(source.port)"
            }
            return source.description
        }
        return "\(balancer)"
    }

    /// Metadata for the session summary: the balancer, and the AUTHORITY (the SNI the client
    /// sent) and UNIQUE_ID TLVs when present, escaped (client-controlled bytes).
    var summaryMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = ["proxy": "\(balancer)"]
        if let authority = header.authority { metadata["proxy.authority"] = "\(LogEscaping.escape(bytes: authority))" }
        if let uniqueID = header.uniqueID { metadata["proxy.unique_id"] = "\(LogEscaping.escape(bytes: uniqueID))" }
        if clientUsedTLS { metadata["proxy.ssl"] = "\(header.sslVersion.map { LogEscaping.escape(bytes: $0) } ?? "yes")" }
        return metadata
    }
}

/// A connection from `proxy_networks` waiting for its PROXY header: the connection's delegate
/// until the header is complete, then replaced by the `POP3Connection`.
final class ProxyHeaderWait: ConnectionDelegate {
    unowned let service: POP3Service
    let connection: Connection
    let implicitTLS: Bool
    /// Created at accept (before the header) so that a failure costs no header wait; it reads
    /// only after the header.
    let tlsTransport: TLSTransport?
    var timer: TimerID?
    /// The header, once the parser found it complete.
    var header: ProxyHeader?
    /// Why the header was refused, for the log line.
    var failure: String?

    init(service: POP3Service, connection: Connection, implicitTLS: Bool, tlsTransport: TLSTransport?) {
        self.service = service
        self.connection = connection
        self.implicitTLS = implicitTLS
        self.tlsTransport = tlsTransport
    }

    /// Parser for `Connection.expectPreamble`: stateless, so it sees every byte so far each time.
    func scan(_ bytes: UnsafeRawBufferPointer) -> PreambleStep {
        switch service.proxyParser.parse(bytes) {
        case .needMore:
            return .needMore
        case .header(let header, let consumed):
            self.header = header
            return .complete(consumed: consumed)
        case .invalid(let reason):
            failure = reason.description
            return .invalid
        }
    }

    func connectionReadable(_ connection: Connection) {}  // never during the preamble

    func connectionPreambleEnded(_ connection: Connection) {
        service.proxyHeaderReceived(self)
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        let why: String
        switch reason {
        case .local: why = failure ?? "closed"
        case .peerClosed: why = "closed by the peer before a complete header"
        case .reset: why = "reset by the peer before a complete header"
        default: why = "\(reason)"
        }
        service.proxyHeaderFailed(self, why: why)
    }
}

extension POP3Service {
    /// Longest PROXY header read: a v2 header of 16 + 216 + 1024 octets (a v1 line is 107 at most).
    static var maxProxyHeaderBytes: Int { ProxyHeaderParser.defaultMaxV2Length }

    var proxyParser: ProxyHeaderParser { ProxyHeaderParser() }

    /// A socket from `proxy_networks`: waits for its header (at most `proxy_header_timeout`),
    /// sending nothing. `max_connections` counts it at once; the per-address cap and every
    /// other rule wait for the header's address.
    func acceptFromBalancer(_ socket: AcceptedSocket, implicitTLS: Bool) {
        if isDraining || connectionCount + pendingProxyHeaders.count >= config.maxConnections {
            metrics?.refused(isDraining ? .shuttingDown : .totalCap)
            logger.notice("connection refused: \(isDraining ? "shutting down" : "max_connections (\(config.maxConnections)) reached")",
                          metadata: ["proxy": "\(socket.peer)"])
            Glibc.close(socket.fd)
            return
        }
        guard let (connection, tlsTransport) = makeConnection(socket, implicitTLS: implicitTLS, peerKey: "proxy") else {
            return
        }
        let wait = ProxyHeaderWait(service: self, connection: connection, implicitTLS: implicitTLS, tlsTransport: tlsTransport)
        pendingProxyHeaders[ObjectIdentifier(wait)] = wait
        connection.delegate = wait
        connection.expectPreamble(maxBytes: Self.maxProxyHeaderBytes) { [unowned wait] in wait.scan($0) }
        // A hard deadline, not an idle timeout: a byte every few seconds does not extend it.
        wait.timer = loop.scheduleTimer(after: UInt64(config.proxyHeaderTimeoutSeconds) * 1_000_000_000) {
            [weak wait] in
            guard let wait, !wait.connection.isClosed else { return }
            wait.timer = nil
            wait.failure = "no complete header within proxy_header_timeout (\(wait.service.config.proxyHeaderTimeoutSeconds) s)"
            wait.connection.close(flushFirst: false)
        }
    }

    /// The header is complete: the session starts for the address it gave.
    func proxyHeaderReceived(_ wait: ProxyHeaderWait) {
        finishProxyWait(wait)
        guard let header = wait.header else {
            wait.connection.close(flushFirst: false)
            return
        }
        // From here the session (or the refusal below) owns the connection's close.
        wait.connection.delegate = nil
        let proxy = ProxiedClient(header: header, balancer: wait.connection.peer)
        let address: IPAddress?
        if proxy.isHealthCheck {
            address = nil  // not a client: no per-address count, no penalty
        } else {
            // UNKNOWN / AF_UNSPEC / AF_UNIX: the balancer's own address stands.
            address = proxy.clientAddress ?? IPAddress(bytes: wait.connection.peer.addressBytes)
        }
        startSession(wait.connection, address: address, implicitTLS: wait.implicitTLS,
                     tlsTransport: wait.tlsTransport, proxy: proxy)
    }

    /// The connection closed before a valid header: one notice line, nothing was sent.
    func proxyHeaderFailed(_ wait: ProxyHeaderWait, why: String) {
        finishProxyWait(wait)
        logger.notice("PROXY header refused: \(why)", metadata: [
            "connection.id": "\(wait.connection.id)", "proxy": "\(wait.connection.peer)",
        ])
    }

    private func finishProxyWait(_ wait: ProxyHeaderWait) {
        if let timer = wait.timer { loop.cancelTimer(timer) }
        wait.timer = nil
        pendingProxyHeaders.removeValue(forKey: ObjectIdentifier(wait))
    }

    /// Drain or shutdown: a connection still waiting for its header has no session to finish.
    func closePendingProxyHeaders() {
        for wait in Array(pendingProxyHeaders.values) {
            wait.failure = "shutting down"
            wait.connection.close(flushFirst: false)
        }
    }
}
