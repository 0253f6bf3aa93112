import Glibc
import Logging
import Reactor

/// `metrics_listen`: `GET /metrics` (and `HEAD`) over HTTP/1.1, served by the event loop of
/// the process that owns the listener (a single pop3d, or the master of the workers).
///
/// A dozen octets of HTTP are all Prometheus needs, so this is hand-written on the reactor
/// rather than a web framework: a framework (SwiftNIO's HTTP server, Hummingbird, Vapor)
/// brings its own event loop threads and thread pool into a process whose design is one
/// single-threaded loop, and would need locks around every metric it reads. Here a scrape is
/// one more connection on the loop, and the body is rendered on the loop thread where the
/// metrics live.
///
/// Bounded like everything else (README, "Limits"): a request head of at most
/// `maxHeadBytes`, complete within `headTimeoutNanoseconds` (a slow client is answered 408
/// and closed), an idle keep-alive connection closed after `keepAliveTimeoutNanoseconds`, at
/// most `maxConnections` metrics connections (a new one closes the oldest), at most
/// `maxRequestsPerTurn` pipelined requests answered per loop turn, and no request content.
/// Pipelined requests are answered in order, each with one call to `render`.
public final class MetricsEndpoint {
    /// Largest request head (request line and fields): larger is answered 431 and closed.
    /// Prometheus sends about 250 octets; 8 KiB is what nginx and Go's net/http start from.
    public static let maxHeadBytes = 8 * 1024
    /// A request head must be complete this long after its first octet (after the connection
    /// is accepted, for the first request: nginx's `client_header_timeout` rule), or the
    /// client gets 408 and the connection is closed. Not reset by octets that trickle in.
    public static let headTimeoutNanoseconds: UInt64 = 10_000_000_000
    /// A keep-alive connection with no request, and no progress writing a response, for this
    /// long is closed (the connection's idle timeout). Prometheus' scrape interval is 15 s by
    /// default, so it keeps its one connection; Go's client drops idle ones after 90 s anyway.
    public static let keepAliveTimeoutNanoseconds: UInt64 = 30_000_000_000
    /// Metrics connections open at once. One Prometheus needs one (two during a reload of its
    /// configuration). At the limit a new connection closes the OLDEST one rather than being
    /// refused (as `max_unauthenticated` does for POP3): whoever can reach the port could
    /// otherwise keep Prometheus out with 16 idle connections; this way holding the port
    /// takes a stream of new connections faster than a scrape.
    public static let maxConnections = 16
    /// Pipelined requests answered for one connection before others get a turn.
    public static let maxRequestsPerTurn = 8
    /// After a reply that closes the connection while the client's input is still coming
    /// (a refused head or content, or requests after `Connection: close`), that input is read
    /// and dropped for up to this long before the close: closing with unread input makes the
    /// kernel send a reset, which can destroy the reply before the client reads it (RFC 9112
    /// §9.6, nginx's `lingering_close`).
    public static let lingerNanoseconds: UInt64 = 1_000_000_000
    /// Octets dropped while lingering, at most; then the connection closes at once.
    public static let maxLingerBytes = 64 * 1024

    /// The limits, adjustable for tests; the defaults are the named limits above.
    public struct Limits: Sendable {
        /// Largest request head, octets (default `MetricsEndpoint.maxHeadBytes`).
        public var maxHeadBytes = MetricsEndpoint.maxHeadBytes
        /// Time for a complete head, nanoseconds (default `MetricsEndpoint.headTimeoutNanoseconds`).
        public var headTimeoutNanoseconds = MetricsEndpoint.headTimeoutNanoseconds
        /// Idle keep-alive time, nanoseconds (default `MetricsEndpoint.keepAliveTimeoutNanoseconds`).
        public var keepAliveTimeoutNanoseconds = MetricsEndpoint.keepAliveTimeoutNanoseconds
        /// Metrics connections at once (default `MetricsEndpoint.maxConnections`).
        public var maxConnections = MetricsEndpoint.maxConnections
        /// The named defaults.
        public init() {}
    }

    /// `Content-Type` of the Prometheus text exposition format 0.0.4.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    let loop: EventLoop
    let listener: Listener
    let logger: Logger
    let limits: Limits
    let render: (inout [UInt8]) -> Void
    private var clients: [ObjectIdentifier: MetricsClient] = [:]
    private var stopped = false
    /// Connections closed to make room because `maxConnections` were open, since the last log line.
    private var refusedSinceLog = 0
    /// Counts accepted connections: the oldest has the lowest.
    private var acceptSerial: UInt64 = 0
    private var lastRefusalLog: UInt64 = 0
    /// Reused for every response: one allocation grows to the largest body, then none.
    var body: [UInt8] = []
    var head: [UInt8] = []
    var dateCache = HTTPDate()

    /// Starts accepting on `listener` (bound or inherited by the caller). `render` appends
    /// the `/metrics` body to its argument; it runs on the loop thread, once per request.
    /// Throws when the listener cannot be registered with the loop (epoll_ctl).
    public init(loop: EventLoop, listener: Listener, logger: Logger, limits: Limits = Limits(),
                render: @escaping (inout [UInt8]) -> Void) throws {
        self.loop = loop
        self.listener = listener
        self.logger = logger
        self.limits = limits
        self.render = render
        try loop.addListener(listener) { [unowned self] socket in self.accept(socket) }
    }

    /// A client holds the endpoint `unowned` and its open Connection holds the client (the
    /// delegate is strong): an endpoint freed with clients open closes them without callbacks,
    /// so none calls back into it.
    deinit {
        for client in clients.values {
            client.connection.delegate = nil
            client.connection.close(flushFirst: false)
        }
    }

    /// Metrics connections open now.
    public var connectionCount: Int { clients.count }

    /// Stops accepting and closes the listener (a drain); connections already open are
    /// served until they close.
    public func stopAccepting() {
        guard !stopped else { return }
        stopped = true
        loop.removeListener(listener)
        listener.close()
    }

    /// Stops accepting and closes every metrics connection now.
    public func close() {
        stopAccepting()
        for client in Array(clients.values) { client.connection.close(flushFirst: false) }
    }

    private func accept(_ socket: AcceptedSocket) {
        acceptSerial &+= 1
        if clients.count >= limits.maxConnections, let oldest = clients.values.min(by: { $0.serial < $1.serial }) {
            clients.removeValue(forKey: ObjectIdentifier(oldest))
            oldest.connection.close(flushFirst: false)
            noteRefusal()
        }
        let connection: Connection
        do {
            connection = try Connection(accepted: socket, loop: loop)
        } catch {
            logger.warning("metrics connection could not be registered", metadata: [
                "client": "\(socket.peer)", "error": "\(error)",
            ])
            return
        }
        let client = MetricsClient(endpoint: self, connection: connection, serial: acceptSerial)
        clients[ObjectIdentifier(client)] = client
        logger.debug("metrics connection", metadata: ["client": "\(socket.peer)", "connection.id": "\(connection.id)"])
    }

    /// Logged at most once a minute, with the count, so a flood cannot flood the log.
    private func noteRefusal() {
        refusedSinceLog += 1
        let minute: UInt64 = 60_000_000_000
        guard lastRefusalLog == 0 || loop.now &- lastRefusalLog >= minute else { return }
        logger.warning("metrics connections evicted: \(limits.maxConnections) open (the limit), the oldest closed for a new one", metadata: [
            "evicted": "\(refusedSinceLog)",
        ])
        refusedSinceLog = 0
        lastRefusalLog = max(1, loop.now)
    }

    func clientClosed(_ client: MetricsClient) {
        clients.removeValue(forKey: ObjectIdentifier(client))
    }
}
