/// Throwaway TLS certificates for the tests, made by the `openssl` command: self-signed, valid
/// for two days, EC P-256 (or RSA 2048) keys without a passphrase.
public enum TestCertificate {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Writes the certificate to `certPath` and its key to `keyPath`, with the given subject
    /// CN and subjectAltName DNS names. Throws `Failure` when `openssl req` fails.
    public static func make(certPath: String, keyPath: String, commonName: String, dnsNames: [String],
                            rsa: Bool = false) throws {
        let san = "subjectAltName=" + dnsNames.map { "DNS:\($0)" }.joined(separator: ",")
        let keyArgs = rsa
            ? ["-newkey", "rsa:2048"]
            : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        let args = ["openssl", "req", "-x509"] + keyArgs + [
            "-nodes", "-days", "2", "-subj", "/CN=\(commonName)", "-addext", san,
            "-keyout", keyPath, "-out", certPath,
        ]
        let status = runQuietly(args)
        guard status == 0 else { throw Failure("openssl req exited with \(status)") }
    }
}
