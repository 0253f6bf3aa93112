import Glibc
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
    /// The reactor connection for an accepted socket, with its implicit-TLS transport when the
    /// listener is `pop3s`; nil (the socket closed, the cause logged) when either cannot be
    /// set up. `peerKey` names the peer in the log line: `client`, or `proxy` for a balancer.
    func makeConnection(_ socket: AcceptedSocket, implicitTLS: Bool, peerKey: String) -> (Connection, TLSTransport?)? {
        var tlsTransport: TLSTransport? = nil
        if implicitTLS {
            do {
                tlsTransport = try makeImplicitTLSTransport(fd: socket.fd)
            } catch {
                logger.warning("cannot set up TLS: \(error)", metadata: [peerKey: "\(socket.peer)"])
                Glibc.close(socket.fd)
                return nil
            }
        }
        do {
            // Connection.init closes the descriptor itself when registration fails.
            let connection = try Connection(accepted: socket, loop: loop, transport: tlsTransport ?? PlainTransport())
            return (connection, tlsTransport)
        } catch {
            logger.warning("cannot set up connection: \(error)", metadata: [peerKey: "\(socket.peer)"])
            return nil
        }
    }

    /// The transport for a socket accepted on an implicit-TLS listener (RFC 8314 §3.3): the
    /// greeting is queued as usual and leaves only once the handshake is done.
    func makeImplicitTLSTransport(fd: Int32) throws -> TLSTransport {
        guard let tls else { throw ConfigError("implicit TLS listener without tls_cert") }
        return try TLSTransport(server: tls.context, fd: fd)
    }

    /// A TLS session for STLS on `fd` (RFC 2595 §4), created before the `+OK`; nil (logged
    /// with its cause) when one cannot be created. The connection installs it itself
    /// (POP3Connection+TLS.swift).
    func makeSTLSTransport(fd: Int32, metadata: Logger.Metadata) -> TLSTransport? {
        guard let tls else { return nil }
        do {
            return try TLSTransport(server: tls.context, fd: fd)
        } catch {
            logger.warning("STLS: cannot create a TLS session: \(error)", metadata: metadata)
            return nil
        }
    }
}
