import Digests

/// Why `hashPassword` could not produce a line.
public enum HashPasswordError: Error, Sendable, Equatable {
    /// The scheme (or its `.b64`/`.hex` suffix) is not one `PasswordScheme` knows.
    case unknownScheme(String)
    /// crypt(3) takes C strings: a password with NUL cannot be hashed by it.
    case passwordContainsNUL
    /// RAND_bytes gave no salt.
    case randomFailed
    /// crypt_gensalt_rn or crypt_r failed (libxcrypt); the text names the step or scheme.
    case cryptFailed(String)
    /// The stored text would contain `:` or a line break and break the
    /// passwd-file line (PLAIN only): use `PLAIN.B64`.
    case notStorable
}

/// Defaults of `hashPassword`, named so the README and `pop3d hash-password` can cite them.
public enum HashDefaults {
    /// Like `doveadm pw` without `-s`.
    public static let scheme = "SHA512-CRYPT"
    /// bcrypt cost (2^12 rounds, ~0.25 s on a 2020s core).
    public static let bcryptCost: UInt = 12
    /// SCRAM iteration count: Dovecot's default (RFC 7677 §4 minimum).
    public static let scramIterations = 4096
    /// Salt length of SSHA*/SMD5/SCRAM-SHA-256.
    public static let saltLength = 16
}

/// Hashes `password` into a `{SCHEME}secret` string usable as the password field
/// of a passwd-file, like `doveadm pw -s SCHEME`. `scheme` may carry Dovecot's
/// `.b64`/`.hex` suffix. Salts come from RAND_bytes or crypt_gensalt_rn.
public func hashPassword(_ password: [UInt8], scheme: String = HashDefaults.scheme) throws(HashPasswordError) -> String {
    guard let spec = SchemeSpec(scheme) else { throw .unknownScheme(scheme) }
    let raw: [UInt8]
    func salt() throws(HashPasswordError) -> [UInt8] {
        guard let s = Crypto.randomBytes(HashDefaults.saltLength) else { throw .randomFailed }
        return s
    }
    func cryptWith(prefix: String, count: UInt) throws(HashPasswordError) -> [UInt8] {
        guard !password.contains(0) else { throw .passwordContainsNUL }
        guard let setting = Crypto.gensalt(prefix: prefix, count: count) else { throw .cryptFailed("gensalt \(prefix)") }
        guard let hash = Crypto.crypt(phrase: password, setting: setting) else { throw .cryptFailed(spec.scheme.rawValue) }
        return hash
    }
    switch spec.scheme {
    case .plain:
        raw = password
    case .crypt:
        // Traditional DES: only the first 8 bytes count. Offered because Dovecot
        // offers it, never the default.
        raw = try cryptWith(prefix: "", count: 0)
    case .md5Crypt: raw = try cryptWith(prefix: "$1$", count: 0)
    case .sha256Crypt: raw = try cryptWith(prefix: "$5$", count: 0)
    case .sha512Crypt: raw = try cryptWith(prefix: "$6$", count: 0)
    case .blfCrypt: raw = try cryptWith(prefix: "$2y$", count: HashDefaults.bcryptCost)
    case .sha1, .sha256, .sha512, .plainMD5, .ldapMD5:
        guard let md = spec.scheme.digest else { throw .unknownScheme(scheme) }
        raw = md.hash(password)
    case .ssha, .ssha256, .ssha512, .smd5:
        guard let md = spec.scheme.digest else { throw .unknownScheme(scheme) }
        let s = try salt()
        raw = md.hash(password, s) + s
    case .scramSHA256:
        let s = try salt()
        let keys = ScramKeys(password: password, salt: s, iterations: HashDefaults.scramIterations)
        raw = Array(ScramSecret(iterations: HashDefaults.scramIterations, salt: s,
                                storedKey: keys.storedKey, serverKey: keys.serverKey).text.utf8)
    }
    let text = spec.encode(raw)
    guard !text.utf8.contains(where: { $0 == UInt8(ascii: ":") || $0 == 0x0a || $0 == 0x0d || $0 == 0 }) else {
        throw .notStorable
    }
    return "{\(spec.name)}" + text
}

/// `hashPassword(_:scheme:)` on the UTF-8 octets of `password`.
/// - Throws: `HashPasswordError`, as the octet version does.
public func hashPassword(_ password: String, scheme: String = HashDefaults.scheme) throws(HashPasswordError) -> String {
    try hashPassword(Array(password.utf8), scheme: scheme)
}
