import CShim

/// Client-side TLS configuration, for tests and pop3bench's TLS scenarios.
///
/// Certificate verification is off by default: a load generator talks to test
/// servers with self-signed certificates. With `verifyPeer`, the chain must lead
/// to `caFile` (or the system store) and name the SNI host given to the stream.
/// Immutable once built; `@unchecked Sendable` for the same reason as
/// `TLSServerContext`.
public final class TLSClientContext: @unchecked Sendable {
    let context: OpaquePointer
    /// ALPN protocol list in wire format (length-prefixed names), empty for none.
    let alpnWire: [UInt8]

    /// - Parameters:
    ///   - minVersion: lowest version offered.
    ///   - maxVersion: highest version offered; `nil` for OpenSSL's highest.
    ///   - verifyPeer: check the server's chain and host name.
    ///   - caFile: PEM trust anchors when verifying; `nil` for the system store.
    ///   - alpn: protocols offered by ALPN, e.g. `["pop3"]`; each 1...255 bytes.
    public init(
        minVersion: TLSVersion = .tls1_2,
        maxVersion: TLSVersion? = nil,
        verifyPeer: Bool = false,
        caFile: String? = nil,
        alpn: [String] = []
    ) throws(TLSError) {
        var wire: [UInt8] = []
        for name in alpn {
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else {
                throw TLSError("ALPN protocol name must be 1 to 255 bytes: \"\(name)\"")
            }
            wire.append(UInt8(bytes.count))
            wire.append(contentsOf: bytes)
        }
        if let maxVersion, maxVersion < minVersion {
            throw TLSError("TLS maximum version is below the minimum")
        }
        guard let context = cshim_tls_client_context_new(
            minVersion.rawValue, maxVersion?.rawValue ?? 0, verifyPeer ? 1 : 0, caFile)
        else {
            throw TLSError.fromShim()
        }
        self.context = context
        self.alpnWire = wire
    }

    deinit {
        cshim_tls_client_context_free(context)
    }
}
