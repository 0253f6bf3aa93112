import Reactor

/// TLS for the service. Until the TLS transport lands, configuring certificates is refused
/// at start-up with a clear message rather than silently serving plaintext.
struct TLSState {
    init(_ config: ServerConfig) throws {
        throw ConfigError("tls_cert: TLS is not available in this build yet")
    }
}

extension POP3Service {
    /// Switches the connection to TLS after the STLS "+OK"; false when TLS is not configured.
    func startTLS(on connection: Connection) -> Bool {
        false
    }
}
