import Auth

extension IPAddress {
    /// 127.0.0.0/8 and ::1 (and IPv4-mapped loopback): treated as trusted for plaintext logins,
    /// like Dovecot's `disable_plaintext_auth` exemption for localhost.
    var isLoopback: Bool {
        Self.loopback.contains { $0.contains(self) }
    }

    private static let loopback: [CIDR] = ["127.0.0.0/8", "::1/128", "::ffff:127.0.0.0/104"].compactMap { CIDR($0) }
}
