/// Outcome of `TLSStream.read(into:)` or `TLSStream.write(_:)`.
///
/// A read may return `.wantWrite` (OpenSSL must send, e.g. a key update or a
/// post-handshake message) and a write may return `.wantRead`: the loop must arm
/// the interest named, not the one matching the call.
public enum TLSIO: Sendable, Equatable {
    /// Bytes decrypted into the buffer, or accepted from it (possibly fewer than offered).
    case bytes(Int)
    /// SSL_ERROR_WANT_READ: call again once the socket is readable.
    case wantRead
    /// SSL_ERROR_WANT_WRITE: call again once the socket is writable.
    case wantWrite
    /// The peer sent close_notify or closed the socket.
    case closed
    /// A fatal error (OpenSSL's reason): the session cannot go on.
    case failed(String)
}
