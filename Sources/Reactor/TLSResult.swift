/// Outcome of a step of the handshake or of `shutdown()`.
///
/// `.wantRead` / `.wantWrite` tell the loop which epoll interest to arm before
/// calling again; they are values, not errors (ARCHITECTURE.md convention 1).
public enum TLSResult: Sendable, Equatable {
    case done
    case wantRead
    case wantWrite
    case failed(String)
}
