import ByteCodec
import Digests

/// Password schemes of Dovecot's passwd-file (`{SCHEME}secret`), by Dovecot's
/// names. Names are case-insensitive as in Dovecot's `password_scheme_lookup`.
public enum PasswordScheme: String, Sendable, Hashable, CaseIterable {
    /// Cleartext. `CLEARTEXT` and `CLEAR` are aliases.
    case plain = "PLAIN"
    /// Anything libxcrypt's `crypt_r` verifies (DES, `$1$`, `$5$`, `$6$`, `$2y$`...).
    /// Dovecot's default scheme for passwd-file when the secret has no `{...}`.
    case crypt = "CRYPT"
    /// `$1$`; Dovecot also accepts the name `MD5` for it.
    case md5Crypt = "MD5-CRYPT"
    /// `$5$`.
    case sha256Crypt = "SHA256-CRYPT"
    /// `$6$`: the default of `hashPassword`, as of `doveadm pw`.
    case sha512Crypt = "SHA512-CRYPT"
    /// bcrypt, `$2y$`/`$2b$`/`$2a$`.
    case blfCrypt = "BLF-CRYPT"
    /// base64(SHA1(pw || salt) || salt).
    case ssha = "SSHA"
    /// base64(SHA256(pw || salt) || salt).
    case ssha256 = "SSHA256"
    /// base64(SHA512(pw || salt) || salt).
    case ssha512 = "SSHA512"
    /// base64(SHA1(pw)); `SHA1` is an alias.
    case sha1 = "SHA"
    /// base64(SHA256(pw)).
    case sha256 = "SHA256"
    /// base64(SHA512(pw)).
    case sha512 = "SHA512"
    /// hex(MD5(pw)).
    case plainMD5 = "PLAIN-MD5"
    /// base64(MD5(pw)).
    case ldapMD5 = "LDAP-MD5"
    /// base64(MD5(pw || salt) || salt).
    case smd5 = "SMD5"
    /// Dovecot's `iter,salt_b64,storedkey_b64,serverkey_b64` (RFC 5802 keys).
    case scramSHA256 = "SCRAM-SHA-256"

    /// How a stored secret is written when the scheme name carries no
    /// `.b64`/`.hex` suffix (Dovecot's `default_encoding`).
    public var defaultEncoding: SecretEncoding {
        switch self {
        case .plain, .crypt, .md5Crypt, .sha256Crypt, .sha512Crypt, .blfCrypt, .scramSHA256: .none
        case .plainMD5: .hex
        case .ssha, .ssha256, .ssha512, .sha1, .sha256, .sha512, .ldapMD5, .smd5: .base64
        }
    }

    /// Digest of the unsalted and salted SHA/MD5 schemes.
    var digest: Digest? {
        switch self {
        case .sha1, .ssha: .sha1
        case .sha256, .ssha256: .sha256
        case .sha512, .ssha512: .sha512
        case .plainMD5, .ldapMD5, .smd5: .md5
        default: nil
        }
    }

    var isSalted: Bool { self == .ssha || self == .ssha256 || self == .ssha512 || self == .smd5 }

    var isCrypt: Bool {
        self == .crypt || self == .md5Crypt || self == .sha256Crypt || self == .sha512Crypt || self == .blfCrypt
    }

    /// Looks a bare scheme name up (no encoding suffix), with Dovecot's aliases.
    public init?(name: some StringProtocol) {
        let upper = name.uppercased()
        switch upper {
        case "CLEARTEXT", "CLEAR": self = .plain
        case "MD5": self = .md5Crypt
        case "SHA1": self = .sha1
        case "DES-CRYPT": self = .crypt
        default:
            guard let s = PasswordScheme(rawValue: upper) else { return nil }
            self = s
        }
    }
}

/// Encoding of a stored secret, from the scheme suffix (`.b64`, `.base64`, `.hex`)
/// or the scheme's default.
public enum SecretEncoding: Sendable, Hashable {
    /// `none`: the octets as written; `base64`: RFC 4648 base64; `hex`: hexadecimal.
    case none, base64, hex
}

/// A parsed `{SCHEME[.enc]}` prefix.
public struct SchemeSpec: Sendable, Hashable {
    /// The password scheme (`SHA512-CRYPT`, `PLAIN`, ...), Dovecot's aliases resolved.
    public var scheme: PasswordScheme
    /// How the secret is encoded: the suffix's (`.b64`, `.hex`) or the scheme's default.
    public var encoding: SecretEncoding

    /// A spec of `scheme` stored in `encoding`.
    public init(scheme: PasswordScheme, encoding: SecretEncoding) {
        self.scheme = scheme
        self.encoding = encoding
    }

    /// Parses `SHA256.HEX`, `ssha512.b64`, `PLAIN`... nil for an unknown scheme or
    /// encoding (Dovecot treats an unknown encoding as an unknown scheme).
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, let scheme = PasswordScheme(name: first) else { return nil }
        self.scheme = scheme
        if parts.count == 1 {
            encoding = scheme.defaultEncoding
        } else {
            switch parts[1].lowercased() {
            case "b64", "base64": encoding = .base64
            case "hex": encoding = .hex
            default: return nil
            }
        }
    }

    /// The text between the braces that `hashPassword` writes.
    var name: String {
        switch (encoding, scheme.defaultEncoding) {
        case (let a, let b) where a == b: scheme.rawValue
        case (.base64, _): scheme.rawValue + ".B64"
        case (.hex, _): scheme.rawValue + ".HEX"
        case (.none, _): scheme.rawValue
        }
    }

    /// Raw secret bytes from their stored text. Like Dovecot's `password_decode`,
    /// a hex secret that is not valid hex is tried as base64, because some
    /// generators wrote base64 under hex-default names.
    func decode(_ text: [UInt8]) -> [UInt8]? {
        switch encoding {
        case .none: return text
        case .base64: return Base64.decode(text, padding: .optional)
        case .hex: return Hex.decode(text) ?? Base64.decode(text, padding: .optional)
        }
    }

    func encode(_ raw: [UInt8]) -> String {
        switch encoding {
        case .none: String(decoding: raw, as: UTF8.self)
        case .base64: Base64.encodedString(raw)
        case .hex: Hex.encodedString(raw)
        }
    }
}
