import Reactor

/// STLS (RFC 2595 §4) and the `tls_handshake_timeout` deadline of a session's handshake
/// (STLS or implicit TLS). The service keeps only the TLS context (POP3Service+TLS.swift).
extension POP3Connection {
    /// The TLS session is created BEFORE the session answers: a failure (out of memory, a
    /// context OpenSSL refuses) is an `-ERR [SYS/TEMP]` on a connection that goes on in
    /// plaintext, not a `+OK` followed by a dropped connection.
    func startTLS() {
        var sink = ConnectionSink(connection: connection)
        guard let transport = service.makeSTLSTransport(fd: connection.fd, metadata: metadata) else {
            session.stlsReady(false, out: &sink)
            return
        }
        session.stlsReady(true, out: &sink)
        // RFC 2595 §4 / CVE-2011-0411: anything pipelined after STLS was sent in plaintext
        // and must not be read as if it came through TLS.
        connection.withInput { $0.count }
        parser.reset()
        // Installed once the plaintext +OK has left the output queue.
        connection.switchTransport(to: transport)
        watchHandshake(transport)
        session.tlsStarted()
    }

    /// Closes the session if its handshake is not done within `tls_handshake_timeout`, and
    /// logs what the handshake negotiated when it completes.
    func watchHandshake(_ transport: TLSTransport) {
        guard let tls = service.tls else { return }
        handshakeTimer = service.loop.scheduleTimer(after: tls.handshakeTimeoutNanoseconds) {
            [weak self, weak transport] in
            guard let self, let transport, !transport.isHandshakeComplete else { return }
            self.handshakeTimer = nil
            self.abort(.tlsFailure("handshake timeout"))
        }
        let logger = service.logger
        transport.onHandshakeComplete = { [weak self] stream in
            guard let self else { return }
            self.cancelHandshakeWatch()
            self.service.metrics?.tlsHandshake(ok: true, version: stream.protocolVersion)
            logger.debug("TLS handshake done", metadata: self.metadata.merging([
                "tls.version": "\(stream.protocolVersion)",
                "tls.cipher": "\(stream.cipher ?? "-")",
                "tls.sni": "\(stream.serverName ?? "-")",
                "tls.alpn": "\(stream.negotiatedALPN ?? "-")",
            ]) { $1 })
        }
    }

    /// The session was closed by `tls_handshake_timeout` (whose timer is gone by then).
    func ended(byHandshakeTimeout reason: EndReason?) -> Bool {
        if case .tlsFailure("handshake timeout") = reason { return true }
        return false
    }

    /// Idempotent.
    func cancelHandshakeWatch() {
        if let handshakeTimer { service.loop.cancelTimer(handshakeTimer) }
        handshakeTimer = nil
    }
}
