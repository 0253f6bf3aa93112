import CShim

/// One TLS session over a nonblocking socket it does not own (the connection
/// closes the descriptor; this class only frees OpenSSL's state).
///
/// Every call returns at once: `.wantRead`/`.wantWrite` say which readiness to
/// wait for before calling again. Bytes already decrypted inside OpenSSL are not
/// visible to epoll, so after a read the loop must check `pendingBytes` and keep
/// reading while it is positive.
///
/// OpenSSL writes to the socket with write(2), not send(MSG_NOSIGNAL): the
/// process must ignore SIGPIPE (the reactor or pop3d should at start) or a write to a peer
/// that hung up kills it.
///
/// Not thread-safe: a stream belongs to the loop thread that drives its socket.
/// It holds a strong reference to its context, so a certificate reload never
/// pulls certificates from under an open session.
public final class TLSStream {
    let ssl: OpaquePointer
    /// The context this session started with, kept alive as long as the session.
    private let owner: AnyObject
    /// After a fatal error OpenSSL forbids SSL_shutdown (SSL_shutdown(3)).
    private var failed = false

    /// Whether the handshake finished.
    public private(set) var isHandshakeComplete = false
    /// Client side: this end sends the first handshake message (ClientHello).
    public let isClient: Bool

    /// A server-side session on an accepted socket.
    public init(server context: TLSServerContext, fd: Int32) throws(TLSError) {
        guard let ssl = cshim_tls_server_session(context.server, fd) else {
            throw TLSError.fromShim()
        }
        self.ssl = ssl
        self.owner = context
        self.isClient = false
    }

    /// A client-side session on a connected socket; `serverName` is sent by SNI
    /// (and checked against the certificate when the context verifies peers).
    public init(client context: TLSClientContext, fd: Int32, serverName: String? = nil) throws(TLSError) {
        let made = context.alpnWire.withUnsafeBufferPointer { alpn in
            cshim_tls_client_session(
                context.context, fd, serverName, alpn.baseAddress, UInt32(alpn.count))
        }
        guard let ssl = made else { throw TLSError.fromShim() }
        self.ssl = ssl
        self.owner = context
        self.isClient = true
    }

    deinit {
        cshim_tls_free(ssl)
    }

    /// Drives the handshake one step; call again on `.wantRead`/`.wantWrite` once
    /// the socket is ready. The caller bounds its total time (handshake timeout).
    public func handshake() -> TLSResult {
        if isHandshakeComplete { return .done }
        if failed { return .failed("TLS session already failed") }
        switch cshim_tls_handshake(ssl) {
        case Int32(CSHIM_TLS_DONE):
            isHandshakeComplete = true
            return .done
        case Int32(CSHIM_TLS_WANT_READ): return .wantRead
        case Int32(CSHIM_TLS_WANT_WRITE): return .wantWrite
        default:
            failed = true
            return .failed(lastShimMessage())
        }
    }

    /// Decrypts up to `buffer.count` bytes. `.closed` on close_notify or EOF.
    public func read(into buffer: UnsafeMutableRawBufferPointer) -> TLSIO {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return .bytes(0) }
        if failed { return .failed("TLS session already failed") }
        let length = Int32(clamping: buffer.count)
        return io(cshim_tls_read(ssl, base, length))
    }

    /// Encrypts and sends up to `bytes.count` bytes; may accept fewer (partial
    /// write mode). After `.wantRead`/`.wantWrite` call again with at least the
    /// same bytes (the buffer may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
    public func write(_ bytes: UnsafeRawBufferPointer) -> TLSIO {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return .bytes(0) }
        if failed { return .failed("TLS session already failed") }
        let length = Int32(clamping: bytes.count)
        return io(cshim_tls_write(ssl, base, length))
    }

    /// Bytes already decrypted and buffered in OpenSSL: epoll will not report
    /// them, so the loop reads again while this is positive.
    public var pendingBytes: Int {
        Int(cshim_tls_pending(ssl))
    }

    /// Sends close_notify (RFC 8446 §6.1) without waiting for the peer's; best
    /// effort: on `.wantWrite` the caller may retry once writable, or just close.
    @discardableResult
    public func shutdown() -> TLSResult {
        if failed || !isHandshakeComplete { return .done }
        switch cshim_tls_shutdown(ssl) {
        case Int32(CSHIM_TLS_DONE): return .done
        case Int32(CSHIM_TLS_WANT_READ): return .wantRead
        case Int32(CSHIM_TLS_WANT_WRITE): return .wantWrite
        default:
            failed = true
            return .failed(lastShimMessage())
        }
    }

    private func io(_ result: Int32) -> TLSIO {
        if result > 0 { return .bytes(Int(result)) }
        switch result {
        case Int32(CSHIM_TLS_WANT_READ): return .wantRead
        case Int32(CSHIM_TLS_WANT_WRITE): return .wantWrite
        case Int32(CSHIM_TLS_CLOSED): return .closed
        default:
            failed = true
            return .failed(lastShimMessage())
        }
    }
}
