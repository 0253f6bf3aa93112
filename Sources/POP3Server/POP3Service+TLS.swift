import Logging
import Reactor

/// The TLS context new connections get. Rebuilt whole on SIGHUP (`POP3Service.reload`);
/// a session keeps the context it started with (its `TLSStream` holds it), so a reload
/// never changes certificates under an open session, and a broken new certificate throws
/// here before anything is replaced.
struct TLSState {
    let context: TLSServerContext
    /// `tls_handshake_timeout`: a client that has not finished the handshake by then is
    /// closed; until then it holds only a descriptor (the handshake never blocks the loop).
    let handshakeTimeoutNanoseconds: UInt64

    init(_ config: ServerConfig) throws {
        guard config.tlsCert.count == config.tlsKey.count else {
            throw ConfigError("tls_cert and tls_key: give them in pairs")
        }
        let minVersion: TLSVersion = config.tlsMinVersion == "TLSv1.3" ? .tls1_3 : .tls1_2
        do {
            context = try TLSServerContext(
                certificates: Array(zip(config.tlsCert, config.tlsKey)), minVersion: minVersion)
        } catch {
            throw ConfigError("tls_cert/tls_key: \(error)")
        }
        handshakeTimeoutNanoseconds = UInt64(max(1, config.tlsHandshakeTimeoutSeconds)) * 1_000_000_000
    }
}

extension POP3Service {
    /// The transport for a socket accepted on an implicit-TLS listener (RFC 8314 §3.3): the
    /// greeting is queued as usual and leaves only once the handshake is done.
    func makeImplicitTLSTransport(fd: Int32) throws -> TLSTransport {
        guard let tls else { throw ConfigError("implicit TLS listener without tls_cert") }
        return try TLSTransport(server: tls.context, fd: fd)
    }

    /// Switches the connection to TLS after the STLS "+OK" (RFC 2595 §4); false when TLS is
    /// not configured or a session cannot be created.
    func startTLS(on connection: Connection) -> TLSTransport? {
        guard let tls else { return nil }
        do {
            let transport = try TLSTransport(server: tls.context, fd: connection.fd)
            connection.switchTransport(to: transport)
            return transport
        } catch {
            logger.warning("STLS: cannot create a TLS session: \(error)")
            return nil
        }
    }

    /// Closes `session` if its handshake is not done within `tls_handshake_timeout`, and logs
    /// what the handshake negotiated when it completes.
    func watchHandshake(_ transport: TLSTransport, of session: POP3Connection) {
        guard let tls else { return }
        let timer = loop.scheduleTimer(after: tls.handshakeTimeoutNanoseconds) {
            [weak session, weak transport] in
            guard let session, let transport, !transport.isHandshakeComplete else { return }
            session.handshakeTimer = nil
            session.abort(reason: "TLS handshake timeout")
        }
        session.handshakeTimer = timer
        let logger = self.logger
        let loop = self.loop
        transport.onHandshakeComplete = { [weak session] stream in
            guard let session else { return }
            if let timer = session.handshakeTimer { loop.cancelTimer(timer) }
            session.handshakeTimer = nil
            logger.debug("TLS handshake done", metadata: session.metadata.merging([
                "tls.version": "\(stream.protocolVersion)",
                "tls.cipher": "\(stream.cipher ?? "-")",
                "tls.sni": "\(stream.serverName ?? "-")",
                "tls.alpn": "\(stream.negotiatedALPN ?? "-")",
            ]) { $1 })
        }
    }
}
