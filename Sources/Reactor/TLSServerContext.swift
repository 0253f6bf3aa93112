import CShim

/// Server-side TLS configuration: one or more certificate chains with their keys,
/// a minimum protocol version, OpenSSL's default secure ciphers, no renegotiation,
/// no compression, a server session cache, ALPN `pop3` when offered (RFC 7301) and
/// SNI selection among the certificates (RFC 6066 §3).
///
/// Immutable once built. A certificate reload (SIGHUP) builds a new context and
/// hands it to new connections; every `TLSStream` keeps a strong reference to the
/// context it started with, so open sessions keep their certificates. A broken
/// new certificate throws here and the caller keeps the old context.
///
/// `@unchecked Sendable`: nothing changes after `init`, and OpenSSL locks an
/// `SSL_CTX` internally for `SSL_new` and its session cache, so a context built on
/// a reload thread may be used by the loop.
public final class TLSServerContext: @unchecked Sendable {
    /// Most certificates one context selects among by SNI (CSHIM_TLS_MAX_CERTIFICATES).
    public static let maximumCertificates = 64

    let server: OpaquePointer
    /// The protocol version below which handshakes are refused.
    public let minVersion: TLSVersion

    /// Loads each PEM chain and key; the first is the default when the client
    /// sends no SNI name or one that no certificate names.
    ///
    /// - Throws: `TLSError` naming the file and OpenSSL's reason when a chain or
    ///   key cannot be read, a key does not match its certificate, the list is
    ///   empty or too long, or `minVersion` is below TLS 1.2.
    public init(
        certificates: [(certPath: String, keyPath: String)],
        minVersion: TLSVersion = .tls1_2
    ) throws(TLSError) {
        guard minVersion >= .tls1_2 else {
            throw TLSError("TLS minimum version must be 1.2 or 1.3 (RFC 8996)")
        }
        guard !certificates.isEmpty else { throw TLSError("no TLS certificate configured") }
        guard certificates.count <= Self.maximumCertificates else {
            throw TLSError("more than \(Self.maximumCertificates) TLS certificates")
        }
        guard let server = cshim_tls_server_new(minVersion.rawValue) else {
            throw TLSError.fromShim()
        }
        for (certPath, keyPath) in certificates {
            if cshim_tls_server_add_certificate(server, certPath, keyPath) != 0 {
                let error = TLSError.fromShim()
                cshim_tls_server_free(server)
                throw error
            }
        }
        self.server = server
        self.minVersion = minVersion
    }

    deinit {
        cshim_tls_server_free(server)
    }
}
