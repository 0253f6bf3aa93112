import Auth
import Logging
import POP3

/// One value of the `auth_mechanisms` setting: Dovecot's name and spelling.
///
/// What is enabled is what is offered: the greeting carries the APOP timestamp only
/// with `apop` (RFC 1939 §7: the timestamp is the offer), CAPA's SASL line and a bare
/// AUTH list only the enabled SASL mechanisms (RFC 2449 §6.3), and a disabled one is
/// refused. USER/PASS is not a mechanism here: it follows `disable_plaintext_auth` only.
public enum AuthMechanism: String, CaseIterable, Sendable, Equatable {
    /// SASL PLAIN.
    case plain
    /// SASL LOGIN.
    case login
    /// SASL CRAM-MD5 (needs cleartext secrets).
    case cramMD5 = "cram-md5"
    /// SASL SCRAM-SHA-256 (needs cleartext or SCRAM-SHA-256 secrets).
    case scramSHA256 = "scram-sha-256"
    /// APOP (RFC 1939 §7; needs cleartext secrets).
    case apop

    /// Dovecot's default: the mechanisms that work whatever scheme a user's secret is
    /// stored in. The challenge-response ones need cleartext (or SCRAM keys) on the server.
    public static let defaults: [AuthMechanism] = [.plain, .login]

    /// The SASL mechanism of this value; nil for APOP, which is a POP3 command.
    public var sasl: SASLMechanism? {
        switch self {
        case .plain: .plain
        case .login: .login
        case .cramMD5: .cramMD5
        case .scramSHA256: .scramSHA256
        case .apop: nil
        }
    }

    /// Whether a user whose secret is stored in `scheme` can log in with this mechanism.
    public func canUse(_ scheme: PasswordScheme) -> Bool {
        switch self {
        case .plain, .login: true  // the password itself arrives and is hashed as stored
        case .cramMD5, .apop: scheme.canVerifyAPOPAndCRAMMD5
        case .scramSHA256: scheme.canVerifySCRAMSHA256
        }
    }

    /// Parses the setting's values: names separated by spaces or commas (Dovecot writes
    /// `auth_mechanisms = plain login`), case-insensitive, duplicates dropped, order kept
    /// (it is CAPA's order).
    ///
    /// - Throws: `ConfigError` naming the key for an unknown name or an empty list.
    public static func parse(_ values: [String]) throws -> [AuthMechanism] {
        var result: [AuthMechanism] = []
        for value in values {
            for word in value.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }) {
                guard let mechanism = AuthMechanism(rawValue: word.lowercased()) else {
                    let known = allCases.map(\.rawValue).joined(separator: ", ")
                    throw ConfigError("auth_mechanisms: '\(word)' is not one of \(known)")
                }
                if !result.contains(mechanism) { result.append(mechanism) }
            }
        }
        guard !result.isEmpty else {
            throw ConfigError("auth_mechanisms: empty; give at least one of plain, login, cram-md5, scram-sha-256, apop")
        }
        return result
    }

    /// One warning per enabled mechanism that some users' secrets cannot work with, e.g.
    /// "cram-md5 is enabled but 12 users have SHA512-CRYPT secrets it cannot use".
    /// Those users fail with that mechanism whatever password they type, and a client that
    /// picks it by default (mpop: the strongest SASL offered; fdm: APOP) never gets in.
    public static func warnings(enabled: [AuthMechanism], usersByScheme: [PasswordScheme: Int]) -> [String] {
        var lines: [String] = []
        for mechanism in enabled {
            let unusable = usersByScheme
                .filter { $0.value > 0 && !mechanism.canUse($0.key) }
                .sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.rawValue < $1.key.rawValue }
            guard !unusable.isEmpty else { continue }
            let parts = unusable.map { scheme, count in
                count == 1 ? "1 user has \(scheme.rawValue) secrets" : "\(count) users have \(scheme.rawValue) secrets"
            }
            lines.append("auth_mechanisms: \(mechanism.rawValue) is enabled but \(parts.joined(separator: " and ")) it cannot use")
        }
        return lines
    }
}

extension POP3Service {
    /// Logs `AuthMechanism.warnings` for `file`: at start-up and after each reload.
    /// O(users); call it where the file was loaded (the reload's worker when it has one).
    static func warnAboutMechanisms(_ file: PasswdFile, enabled: [AuthMechanism], logger: Logger) {
        for line in AuthMechanism.warnings(enabled: enabled, usersByScheme: file.usersByScheme) {
            logger.warning("\(line)")
        }
    }
}
