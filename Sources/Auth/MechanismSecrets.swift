/// Which stored secrets each authentication mechanism can verify. A challenge-response
/// mechanism never sees the password, so it can only work when the server stores the
/// cleartext or keys made for that mechanism (Dovecot's `password_scheme` "credentials"
/// lookups fail the same way).
extension PasswordScheme {
    /// APOP (RFC 1939 §7, MD5 of timestamp and password) and CRAM-MD5 (RFC 2195,
    /// HMAC-MD5 keyed by the password) need the cleartext: PLAIN only.
    public var canVerifyAPOPAndCRAMMD5: Bool { self == .plain }

    /// SCRAM-SHA-256 (RFC 7677) needs the cleartext or Dovecot's SCRAM-SHA-256 keys.
    public var canVerifySCRAMSHA256: Bool { self == .plain || self == .scramSHA256 }
}
