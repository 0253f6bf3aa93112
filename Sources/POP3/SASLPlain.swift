/// SASL PLAIN (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`.
public enum SASLPlain {
    /// A decoded PLAIN message (RFC 4616 §2).
    public struct Credentials: Equatable, Sendable {
        /// The authorization identity, UTF-8; empty when the client sent none. Only empty or equal to
        /// `authcid` is accepted (`userToLogIn`).
        public var authzid: String
        /// The authentication identity: the user name, non-empty UTF-8.
        public var authcid: String
        /// The password octets, non-empty, not checked to be UTF-8.
        public var password: [UInt8]
    }

    /// Splits a PLAIN message; nil when malformed (not exactly two NULs, empty
    /// authcid or password, or not UTF-8 identities).
    public static func parse(_ message: [UInt8]) -> Credentials? {
        guard let first = message.firstIndex(of: 0) else { return nil }
        guard let second = message[(first + 1)...].firstIndex(of: 0) else { return nil }
        guard !message[(second + 1)...].contains(0) else { return nil }
        let authcidBytes = message[(first + 1)..<second]
        let password = Array(message[(second + 1)...])
        guard !authcidBytes.isEmpty, !password.isEmpty,
            let authzid = String(validating: message[..<first], as: UTF8.self),
            let authcid = String(validating: authcidBytes, as: UTF8.self)
        else { return nil }
        return Credentials(authzid: authzid, authcid: authcid, password: password)
    }

    /// The authcid's octets of a message that `parse` refused, for the failed-login log line:
    /// only when the message has exactly two NULs (the RFC 4616 §2 framing), else empty, so
    /// that a client that got the framing wrong (`user NUL password`) never has its password
    /// logged as a name.
    public static func authcidOctets(_ message: [UInt8]) -> [UInt8] {
        guard let first = message.firstIndex(of: 0),
              let second = message[(first + 1)...].firstIndex(of: 0),
              !message[(second + 1)...].contains(0) else { return [] }
        return Array(message[(first + 1)..<second])
    }

    /// RFC 4616 §2 lets the server refuse a different authorization identity;
    /// we have no proxy users, so only empty or equal to authcid is accepted.
    public static func userToLogIn(_ credentials: Credentials) -> String? {
        // Compared as octets: a canonically equivalent spelling is another identity.
        if credentials.authzid.isEmpty || credentials.authzid.utf8.elementsEqual(credentials.authcid.utf8) {
            return credentials.authcid
        }
        return nil
    }

    /// Builds a PLAIN message (client side, pop3bench).
    public static func encode(authzid: String = "", user: String, password: String) -> [UInt8] {
        Array(authzid.utf8) + [0] + Array(user.utf8) + [0] + Array(password.utf8)
    }
}
