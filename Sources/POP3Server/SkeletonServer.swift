import Glibc
import Logging
import Reactor

/// The placeholder protocol until the real session handler is plugged into `ServerLifecycle`:
/// greets "+OK", answers QUIT with "+OK" and closes, and "-ERR" to anything else.
public final class SkeletonServer {
    /// Longest command line accepted (RFC 2449 section 4: 255 octets including CRLF).
    public static let maxLineBytes = 255
    /// Idle timeout (RFC 1939 section 3: at least 10 minutes).
    public static let idleTimeoutNanoseconds: UInt64 = 600 * 1_000_000_000

    let loop: EventLoop
    var logger: Logger
    private var sessions: [UInt64: SkeletonSession] = [:]
    public private(set) var served = 0
    var draining = false
    /// Called when the last session ended during a drain.
    public var onDrained: (() -> Void)?

    public init(loop: EventLoop, logger: Logger) {
        self.loop = loop
        self.logger = logger
    }

    public var connectionCount: Int { sessions.count }

    public func accept(_ socket: AcceptedSocket) {
        let connection: Connection
        do {
            connection = try Connection(accepted: socket, loop: loop)
        } catch {
            logger.warning("cannot set up connection: \(error)")
            return
        }
        connection.idleTimeout = Self.idleTimeoutNanoseconds
        connection.maxInputBytes = 4 * 1024
        let session = SkeletonSession(server: self, connection: connection)
        connection.delegate = session
        sessions[connection.id] = session
        logger.debug("connected", metadata: ["connection.id": "\(connection.id)", "client": "\(socket.peer)"])
        connection.write("+OK pop3d ready\r\n" as StaticString)
        if draining { connection.close(flushFirst: true) }
    }

    /// Skeleton sessions never run long commands: every session is idle, close them all.
    public func drain() {
        draining = true
        for session in Array(sessions.values) { session.connection.close(flushFirst: true) }
        if sessions.isEmpty { onDrained?() }
    }

    public func closeAll() {
        for session in Array(sessions.values) { session.connection.close(flushFirst: false) }
    }

    func ended(_ connection: Connection, reason: CloseReason) {
        sessions[connection.id] = nil
        served += 1
        logger.debug("closed", metadata: ["connection.id": "\(connection.id)", "reason": "\(reason)"])
        if draining && sessions.isEmpty { onDrained?() }
    }

    /// Runs the skeleton under the lifecycle: the whole of `pop3d serve` until a drain ends.
    public static func serve(listen: [String], shutdownTimeoutSeconds: Double, logger: Logger) throws {
        var addresses: [SocketAddress] = []
        for text in listen {
            guard let address = SocketAddress(parsing: text) else {
                throw LifecycleError("--listen '\(text)': expected HOST:PORT such as 127.0.0.1:1110 or [::1]:1110")
            }
            addresses.append(address)
        }
        let loop = try EventLoop(logger: logger)
        let listeners = try ServerLifecycle.makeListeners(binding: addresses, logger: logger)
        let server = SkeletonServer(loop: loop, logger: logger)
        let lifecycle = ServerLifecycle(
            loop: loop, listeners: listeners, shutdownTimeoutSeconds: shutdownTimeoutSeconds, logger: logger,
            hooks: .init(
                accept: { socket, _ in server.accept(socket) },
                counts: { LifecycleCounts(connections: server.connectionCount, loggedIn: 0, served: server.served) },
                reload: { logger.info("nothing to reload in the skeleton") },
                drain: { server.drain() },
                closeAll: { server.closeAll() }))
        server.onDrained = { [unowned lifecycle] in lifecycle.sessionsDrained() }
        try lifecycle.start()
        try lifecycle.run()
    }
}

final class SkeletonSession: ConnectionDelegate {
    unowned let server: SkeletonServer
    let connection: Connection

    init(server: SkeletonServer, connection: Connection) {
        self.server = server
        self.connection = connection
    }

    func connectionReadable(_ connection: Connection) {
        while !connection.isClosed {
            var quit = false
            let used = connection.withInput { bytes -> Int in
                guard let lf = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
                    // No LF within the limit: answer once and resynchronise at the next LF.
                    if bytes.count > SkeletonServer.maxLineBytes {
                        connection.write("-ERR line too long\r\n" as StaticString)
                        return bytes.count
                    }
                    return 0
                }
                var end = lf
                if end > 0 && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                let line = UnsafeRawBufferPointer(rebasing: bytes[0..<end])
                if lf + 1 > SkeletonServer.maxLineBytes {
                    connection.write("-ERR line too long\r\n" as StaticString)
                } else if Self.isQuit(line) {
                    connection.write("+OK pop3d signing off\r\n" as StaticString)
                    quit = true
                } else {
                    connection.write("-ERR unknown command\r\n" as StaticString)
                }
                return lf + 1
            }
            if quit {
                connection.close(flushFirst: true)
                return
            }
            if used == 0 { return }
        }
    }

    /// "QUIT" case-insensitively (RFC 1939 section 3: keywords are case-insensitive).
    static func isQuit(_ line: UnsafeRawBufferPointer) -> Bool {
        guard line.count == 4 else { return false }
        let word: [UInt8] = Array("QUIT".utf8)
        for i in 0..<4 where line[i] & 0xDF != word[i] { return false }
        return true
    }

    func connectionWillTimeOut(_ connection: Connection) {
        connection.write("-ERR idle timeout\r\n" as StaticString)
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        server.ended(connection, reason: reason)
    }
}
