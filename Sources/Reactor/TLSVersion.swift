/// Protocol versions a TLS context may be limited to.
///
/// Servers accept `.tls1_2` (RFC 8996 deprecates anything older; RFC 8314 §4.1 asks
/// for TLS 1.2 or later) or `.tls1_3`. `.tls1_1` exists only so tests and
/// pop3bench can build an outdated client and see a server refuse it.
public enum TLSVersion: Int32, Sendable, Comparable, CaseIterable {
    /// TLS 1.1 (RFC 4346): test clients only.
    case tls1_1 = 11
    /// TLS 1.2 (RFC 5246).
    case tls1_2 = 12
    /// TLS 1.3 (RFC 8446).
    case tls1_3 = 13

    /// Older before newer (TLS 1.1 < 1.2 < 1.3).
    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool { lhs.rawValue < rhs.rawValue }
}
