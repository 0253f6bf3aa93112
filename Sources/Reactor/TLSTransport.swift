import Glibc

/// A TLS failure seen by the transport (handshake refused, bad record, peer alert). The
/// connection closes with `.error`; the reason is kept in `TLSTransport.failureReason` for
/// the owner's log line, because `CloseReason` only carries an errno.
public struct TLSTransportError: Error, Sendable, CustomStringConvertible {
    /// Which step failed and OpenSSL's reason: `handshake: ...`, `read: ...`, `write: ...`.
    public let reason: String
    /// `reason`.
    public var description: String { reason }
}

/// `Transport` over a `TLSStream` on the connection's socket (server or client side; a client
/// transport `speaksFirst`, so the connection kicks its handshake off once installed).
///
/// The handshake runs lazily inside `read`/`write`: whichever the connection calls first
/// drives it, so implicit TLS (RFC 8314 §3.3) needs no special start — the greeting queued
/// at accept simply waits in the output queue until the handshake is done, and is never
/// sent in plaintext. WANT_READ/WANT_WRITE become `.wouldBlock(needs:)` in both directions
/// (a write may need the socket readable during the handshake or a key update, a read may
/// need it writable), and decrypted bytes held inside OpenSSL are announced through
/// `hasBufferedInput` because epoll cannot see them.
///
/// The caller bounds the handshake's duration (`isHandshakeComplete` after a timer):
/// a client that stalls mid-handshake costs one descriptor, never loop time.
public final class TLSTransport: Transport {
    /// The TLS session (the connection's SSL object) this transport reads and writes through.
    public let stream: TLSStream
    /// Why the session failed, for the log: OpenSSL's reason, or nil.
    public private(set) var failureReason: String?
    /// Called once, on the loop, when the handshake completes (logging, metrics).
    public var onHandshakeComplete: ((TLSStream) -> Void)?

    /// A transport over an existing stream (server or client side).
    public init(stream: TLSStream) {
        self.stream = stream
    }

    /// A server-side transport on an accepted socket.
    public convenience init(server context: TLSServerContext, fd: Int32) throws(TLSError) {
        self.init(stream: try TLSStream(server: context, fd: fd))
    }

    /// A client-side transport on a connected (or connecting) socket; `serverName` goes into
    /// SNI. Its handshake starts as soon as a connection installs it (`speaksFirst`).
    public convenience init(client context: TLSClientContext, fd: Int32, serverName: String? = nil) throws(TLSError) {
        self.init(stream: try TLSStream(client: context, fd: fd, serverName: serverName))
    }

    /// The handshake finished (the ALPN/SNI/version answers of `stream` are final).
    public var isHandshakeComplete: Bool { stream.isHandshakeComplete }

    /// A client sends the ClientHello before the server says anything.
    public var speaksFirst: Bool { stream.isClient && !stream.isHandshakeComplete }

    /// Server side, until the handshake is done: the next `read` may answer a ClientHello,
    /// which signs with the certificate's key (about 0.56 ms for RSA-2048, 0.28 ms for
    /// ECDSA P-256 on the reference machine) and costs the client nothing. The connection
    /// asks the loop's per-turn handshake budget first (EventLoop+Handshakes.swift).
    public var handshakeStepPending: Bool { !stream.isClient && !stream.isHandshakeComplete }

    /// Steps the handshake; nil once it is done, else what to report to the connection.
    private func advanceHandshake() throws(TLSTransportError) -> TransportResult? {
        if stream.isHandshakeComplete { return nil }
        switch stream.handshake() {
        case .done:
            onHandshakeComplete?(stream)
            onHandshakeComplete = nil
            return nil
        case .wantRead: return .wouldBlock(needs: .readable)
        case .wantWrite: return .wouldBlock(needs: .writable)
        case .failed(let reason): throw fail("handshake: \(reason)")
        }
    }

    private func fail(_ reason: String) -> TLSTransportError {
        failureReason = failureReason ?? reason
        return TLSTransportError(reason: reason)
    }

    /// Drives the handshake first (server side: one step, budgeted by the connection), then reads
    /// decrypted bytes. WANT_READ/WANT_WRITE become `.wouldBlock(needs:)`, close_notify
    /// `.endOfStream`.
    /// - Throws: `TLSTransportError` (`read: reason`, `handshake: reason`); the reason is kept in
    /// `failureReason`.
    public func read(fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> TransportResult {
        if let blocked = try advanceHandshake() { return blocked }
        switch stream.read(into: buffer) {
        case .bytes(let n): return n > 0 ? .bytes(n) : .wouldBlock(needs: .readable)
        case .wantRead: return .wouldBlock(needs: .readable)
        case .wantWrite: return .wouldBlock(needs: .writable)
        case .closed: return .endOfStream
        case .failed(let reason): throw fail("read: \(reason)")
        }
    }

    /// Writes the chunks in order as TLS records. Stops at the first partial write so a retry
    /// after WANT_* offers the same bytes first, as SSL_write requires (the queue may move them:
    /// SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
    ///
    /// A server-side handshake is driven by `read` only (every step of it waits for the
    /// client's bytes, which epoll reports): a write during the handshake reports
    /// `.wouldBlock(needs: .readable)`, as OpenSSL would, without running a step outside the
    /// loop's handshake budget.
    public func write(fd: Int32, _ chunks: UnsafeBufferPointer<iovec>) throws -> TransportResult {
        if handshakeStepPending { return .wouldBlock(needs: .readable) }
        if let blocked = try advanceHandshake() { return blocked }
        var total = 0
        for chunk in chunks where chunk.iov_len > 0 {
            let bytes = UnsafeRawBufferPointer(start: chunk.iov_base, count: chunk.iov_len)
            switch stream.write(bytes) {
            case .bytes(let n):
                total += n
                if n < bytes.count { return .bytes(total) }
            case .wantRead:
                return total > 0 ? .bytes(total) : .wouldBlock(needs: .readable)
            case .wantWrite:
                return total > 0 ? .bytes(total) : .wouldBlock(needs: .writable)
            case .closed:
                return total > 0 ? .bytes(total) : .endOfStream
            case .failed(let reason):
                if total > 0 { return .bytes(total) }
                throw fail("write: \(reason)")
            }
        }
        return total > 0 ? .bytes(total) : .wouldBlock(needs: .writable)
    }

    /// Decrypted bytes held inside OpenSSL (SSL_pending) after the handshake, which epoll cannot
    /// report.
    public var hasBufferedInput: Bool {
        stream.isHandshakeComplete && stream.pendingBytes > 0
    }

    /// close_notify (RFC 8446 §6.1), best effort: one attempt, the peer's reply is not awaited.
    public func willClose(fd: Int32) {
        stream.shutdown()
    }
}
