import ByteCodec
import Digests

/// Checks a cleartext password against a stored entry. Every comparison is
/// constant-time; a secret that cannot be used (bad SCRAM text, crypt failure)
/// is a plain `false`.
public func verify(password: [UInt8], entry: UserEntry) -> Bool {
    // The glue refuses longer passwords before queuing a hash; this keeps every other caller
    // (and any path that forgets) from paying for one.
    guard password.count <= CostLimits.maxPasswordLength else { return false }
    let scheme = entry.scheme
    switch scheme {
    case .plain:
        // Compare digests so that neither the length nor a prefix of the
        // secret leaks through timing (one shim call, no arrays: issue 17).
        return Digest.sha256.digestsEqual(password, entry.secret)
    case .crypt, .md5Crypt, .sha256Crypt, .sha512Crypt, .blfCrypt:
        guard let computed = Crypto.crypt(phrase: password, setting: entry.secret) else { return false }
        return Crypto.constantTimeEqual(computed, entry.secret)
    case .sha1, .sha256, .sha512, .plainMD5, .ldapMD5:
        guard let md = scheme.digest else { return false }
        return Crypto.constantTimeEqual(md.hash(password), entry.secret)
    case .ssha, .ssha256, .ssha512, .smd5:
        guard let md = scheme.digest, entry.secret.count > md.size else { return false }
        let stored = entry.secret[..<md.size]
        let salt = entry.secret[md.size...]
        return Crypto.constantTimeEqual(md.hash(password, salt), stored)
    case .scramSHA256:
        guard let s = ScramSecret(entry.secret) else { return false }
        let keys = ScramKeys(password: password, salt: s.salt, iterations: s.iterations)
        return Crypto.constantTimeEqual(keys.storedKey, s.storedKey)
    }
}

/// Load-time sanity checks, so a broken line is reported at start instead of
/// failing silently at every login.
enum SecretCheck {
    static func problem(scheme: PasswordScheme, secret: [UInt8]) -> String? {
        func prefixed(_ prefixes: String...) -> Bool {
            prefixes.contains { secret.starts(with: $0.utf8) }
        }
        switch scheme {
        case .plain:
            return nil
        case .crypt:
            return secret.isEmpty ? "empty CRYPT hash" : CostLimits.cryptProblem(secret)
        case .md5Crypt:
            return prefixed("$1$") ? nil : "MD5-CRYPT hash does not start with $1$"
        case .sha256Crypt:
            return prefixed("$5$") ? CostLimits.cryptProblem(secret) : "SHA256-CRYPT hash does not start with $5$"
        case .sha512Crypt:
            return prefixed("$6$") ? CostLimits.cryptProblem(secret) : "SHA512-CRYPT hash does not start with $6$"
        case .blfCrypt:
            return prefixed("$2a$", "$2b$", "$2y$", "$2x$")
                ? CostLimits.cryptProblem(secret) : "BLF-CRYPT hash does not start with $2a$, $2b$ or $2y$"
        case .sha1, .sha256, .sha512, .plainMD5, .ldapMD5:
            guard let md = scheme.digest else { return "internal: no digest" }
            return secret.count == md.size ? nil : "\(scheme.rawValue) digest has \(secret.count) bytes, expected \(md.size)"
        case .ssha, .ssha256, .ssha512, .smd5:
            guard let md = scheme.digest else { return "internal: no digest" }
            return secret.count > md.size ? nil : "\(scheme.rawValue) secret too short to hold a salt"
        case .scramSHA256:
            // The iteration count is checked on its own so that the warning says why.
            let first = secret.prefix { $0 != UInt8(ascii: ",") }
            if first.count <= 19, first.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
               let n = Int(String(decoding: first, as: UTF8.self)), n > CostLimits.maxPBKDF2Iterations {
                return "SCRAM-SHA-256 iteration count \(n) above the limit \(CostLimits.maxPBKDF2Iterations)"
            }
            return ScramSecret(secret) == nil ? "SCRAM-SHA-256 secret is not iter,salt,storedkey,serverkey" : nil
        }
    }
}

/// Dovecot's stored SCRAM-SHA-256 secret: `iter,salt_b64,storedkey_b64,serverkey_b64`.
struct ScramSecret: Sendable, Equatable {
    /// Highest iteration count accepted from a file: a typo must not turn one
    /// login into minutes of CPU (`CostLimits.maxPBKDF2Iterations`).
    static let maxIterations = CostLimits.maxPBKDF2Iterations

    var iterations: Int
    var salt: [UInt8]
    var storedKey: [UInt8]
    var serverKey: [UInt8]

    init(iterations: Int, salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8]) {
        self.iterations = iterations
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
    }

    init?(_ text: [UInt8]) {
        let parts = text.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard parts.count == 4,
              let iter = Int(String(decoding: parts[0], as: UTF8.self)),
              iter >= 1, iter <= Self.maxIterations,
              let salt = Base64.decode(parts[1], padding: .optional), !salt.isEmpty,
              let stored = Base64.decode(parts[2], padding: .optional), stored.count == 32,
              let server = Base64.decode(parts[3], padding: .optional), server.count == 32
        else { return nil }
        self.init(iterations: iter, salt: salt, storedKey: stored, serverKey: server)
    }

    var text: String {
        "\(iterations),\(Base64.encodedString(salt)),\(Base64.encodedString(storedKey)),\(Base64.encodedString(serverKey))"
    }
}

/// RFC 5802 §3 keys derived from a cleartext password (SHA-256, RFC 7677).
struct ScramKeys {
    var storedKey: [UInt8]
    var serverKey: [UInt8]

    init(password: [UInt8], salt: [UInt8], iterations: Int) {
        let salted = Crypto.pbkdf2(.sha256, password: password, salt: salt, iterations: iterations, length: 32)
        let clientKey = Digest.sha256.hmac(key: salted, data: Array("Client Key".utf8))
        storedKey = Digest.sha256.hash(clientKey)
        serverKey = Digest.sha256.hmac(key: salted, data: Array("Server Key".utf8))
    }
}
