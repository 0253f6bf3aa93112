import CShim

/// What the handshake negotiated, for logs (`tls.version`, `tls.cipher`) and tests.
extension TLSStream {
    /// The ALPN protocol agreed (RFC 7301), `nil` when the client offered none we speak.
    public var negotiatedALPN: String? {
        var length: UInt32 = 0
        guard let data = cshim_tls_alpn(ssl, &length) else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// The SNI host name the client sent (server side) or that we sent (client side).
    public var serverName: String? {
        cshim_tls_server_name(ssl).map { String(cString: $0) }
    }

    /// "TLSv1.3", "TLSv1.2"...
    public var protocolVersion: String {
        cshim_tls_protocol_version(ssl).map { String(cString: $0) } ?? "unknown"
    }

    /// The cipher suite name; `nil` before the handshake.
    public var cipher: String? {
        cshim_tls_cipher(ssl).map { String(cString: $0) }
    }

    /// The subject common name of the peer's certificate (client side: which of
    /// the server's certificates SNI picked); `nil` when there is none.
    public var peerCommonName: String? {
        var buffer = [CChar](repeating: 0, count: 256)
        let count = buffer.withUnsafeMutableBufferPointer {
            cshim_tls_peer_common_name(ssl, $0.baseAddress, Int32($0.count))
        }
        guard count >= 0 else { return nil }
        return String(decoding: buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
