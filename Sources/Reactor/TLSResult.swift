/// Outcome of a step of the handshake or of `shutdown()`.
///
/// `.wantRead` / `.wantWrite` tell the loop which epoll interest to arm before
/// calling again; they are values, not errors (ARCHITECTURE.md convention 1).
public enum TLSResult: Sendable, Equatable {
    /// The step is complete.
    case done
    /// SSL_ERROR_WANT_READ: call again once the socket is readable.
    case wantRead
    /// SSL_ERROR_WANT_WRITE: call again once the socket is writable.
    case wantWrite
    /// A fatal error (OpenSSL's reason).
    case failed(String)
}
