/// Ceilings on what one login attempt may cost a hashing worker. A passwd-file line whose
/// cost parameter is above its ceiling is refused at start and on reload with a warning
/// naming the file and line (that user cannot log in), because libxcrypt and OpenSSL accept
/// absurd values: `$2b$31$` ties a worker up for about 30 hours per attempt and
/// `rounds=999999999` for about 4 minutes, so one such line (a typo, or a hostile edit) would
/// let anyone who knows the user name stop every login. A password longer than
/// `maxPasswordLength` is refused before hashing.
///
/// Timings quoted below are single-thread figures measured on this project's 2-core build
/// machine under load (libxcrypt 4.4, OpenSSL 3; `Benchmarks/hashcost.c` measures them).
public enum CostLimits {
    /// Highest bcrypt cost (`$2b$NN$`, 2^NN rounds): 14 is about 2.1-2.3 s here, four times
    /// the cost 12 that `pop3d hash-password` writes (0.5 s); 15 doubles that to 4.1-4.3 s,
    /// and the largest, 31, would be about 30 hours.
    public static let maxBcryptCost = 14
    /// Highest `rounds=` of SHA256-CRYPT and SHA512-CRYPT: 1,000,000 is about 0.8-0.9 s here.
    /// It admits passlib's default (656,000) and libxcrypt's (5,000); libxcrypt itself
    /// accepts up to 999,999,999.
    public static let maxSHACryptRounds = 1_000_000
    /// Highest PBKDF2 iteration count of a stored SCRAM-SHA-256 secret: 1,000,000 is about
    /// 0.65-0.9 s here, above OWASP's 600,000 for PBKDF2-HMAC-SHA256 and far above RFC 7677's
    /// minimum and Dovecot's default of 4,096.
    public static let maxPBKDF2Iterations = 1_000_000
    /// Highest yescrypt / gost-yescrypt / scrypt cost: the parameter sets that libxcrypt's
    /// own `crypt_gensalt` writes for counts up to 10 (yescrypt 10 is about 1.3-1.6 s here,
    /// scrypt 10 about 1.7-2.1 s; Debian's default for /etc/shadow is yescrypt count 5, 0.05 s). A hash
    /// with any other parameters is refused: its memory and time are not bounded by us.
    public static let maxMemoryHardCount: UInt = 10
    /// Highest iteration count of BSDi extended DES (`_CCCC`): 2^20 is about 0.4 s here.
    public static let maxBSDiRounds = 1 << 20
    /// Longest password hashed, in octets. SHA-crypt and MD5-crypt cost grows with the
    /// password's length: SHA512-CRYPT (5,000 rounds) takes 2.0 ms at 8 octets, 5.9 ms at 256
    /// and 19.7 ms at 511 here. A POP3
    /// `PASS` line carries at most 248 octets of password (RFC 2449's 255-octet command line),
    /// so 256 admits every password `USER`/`PASS` can send; AUTH PLAIN and LOGIN, whose
    /// responses may be longer, get the same limit. A longer one is a failed login
    /// (`-ERR [AUTH]`, after the address's penalty) without any hashing.
    public static let maxPasswordLength = 256

    /// Why a crypt(3) setting/hash is refused, or nil when its cost is bounded. Accepted:
    /// traditional DES, BSDi (`_`), `$1$`, `$3$`, `$5$`, `$6$`, `$2a/b/x/y$`, `$y$`, `$gy$`,
    /// `$7$` within the limits above. Others (`$sha1$`, SunMD5 `$md5`, unknown prefixes)
    /// carry costs this server does not bound, or cannot be verified at all.
    public static func cryptProblem(_ hash: [UInt8]) -> String? {
        func starts(_ p: String) -> Bool { hash.starts(with: p.utf8) }
        if hash.first == UInt8(ascii: "_") {
            // _ + 4 characters of rounds (itoa64, least significant first) + 4 of salt.
            guard hash.count >= 9 else { return "BSDi crypt hash is too short" }
            var rounds = 0
            for (i, c) in hash[1..<5].enumerated() {
                guard let v = itoa64(c) else { return "BSDi crypt hash has a bad rounds field" }
                rounds |= v << (6 * i)
            }
            return rounds > maxBSDiRounds ? "BSDi crypt rounds \(rounds) above the limit \(maxBSDiRounds)" : nil
        }
        guard hash.first == UInt8(ascii: "$") else {
            // Traditional DES: 2 characters of salt, fixed cost.
            return nil
        }
        if starts("$1$") || starts("$3$") { return nil }
        if starts("$5$") || starts("$6$") {
            let rest = hash.dropFirst(3)
            guard rest.starts(with: "rounds=".utf8) else { return nil }  // default 5,000
            let digits = rest.dropFirst(7).prefix { $0 != UInt8(ascii: "$") }
            guard !digits.isEmpty, digits.count <= 10, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let n = Int(String(decoding: digits, as: UTF8.self)) else {
                return "SHA-crypt hash has a bad rounds= field"
            }
            return n > maxSHACryptRounds ? "SHA-crypt rounds=\(n) above the limit \(maxSHACryptRounds)" : nil
        }
        if starts("$2a$") || starts("$2b$") || starts("$2x$") || starts("$2y$") {
            let field = Array(hash.dropFirst(4).prefix(3))
            guard field.count == 3, field[2] == UInt8(ascii: "$"),
                  field[0] >= 0x30 && field[0] <= 0x39, field[1] >= 0x30 && field[1] <= 0x39 else {
                return "bcrypt hash has a bad cost field"
            }
            let cost = Int(field[0] - 0x30) * 10 + Int(field[1] - 0x30)
            return cost > maxBcryptCost ? "bcrypt cost \(cost) above the limit \(maxBcryptCost)" : nil
        }
        for prefix in ["$y$", "$gy$", "$7$"] where starts(prefix) {
            let params = memoryHardParams(hash.dropFirst(prefix.utf8.count), prefix: prefix)
            return MemoryHard.allowed[prefix]?.contains(params) == true
                ? nil
                : "\(prefix) hash with cost parameters above libxcrypt's count \(maxMemoryHardCount)"
        }
        let method = String(decoding: hash.dropFirst().prefix { $0 != UInt8(ascii: "$") }.prefix(8), as: UTF8.self)
        return "crypt(3) method $\(method)$ is not accepted: its cost is not bounded here"
    }

    /// The cost part of a memory-hard setting: yescrypt's `$y$PARAMS$`, scrypt's fixed
    /// 11 characters after `$7$` (N, r, p).
    static func memoryHardParams(_ rest: ArraySlice<UInt8>, prefix: String) -> [UInt8] {
        if prefix == "$7$" { return Array(rest.prefix(11)) }
        return Array(rest.prefix { $0 != UInt8(ascii: "$") })
    }

    /// The parameter sets libxcrypt's `crypt_gensalt` writes for counts up to the limit.
    enum MemoryHard {
        static let allowed: [String: Set<[UInt8]>] = {
            var table: [String: Set<[UInt8]>] = [:]
            for prefix in ["$y$", "$gy$", "$7$"] {
                var set: Set<[UInt8]> = []
                for count in 0...maxMemoryHardCount {
                    guard let setting = Crypto.gensalt(prefix: prefix, count: count) else { continue }
                    set.insert(memoryHardParams(setting.dropFirst(prefix.utf8.count), prefix: prefix))
                }
                table[prefix] = set
            }
            return table
        }()
    }

    private static func itoa64(_ c: UInt8) -> Int? {
        switch c {
        case UInt8(ascii: "."): 0
        case UInt8(ascii: "/"): 1
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(c) - 0x30 + 2
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): Int(c) - 0x41 + 12
        case UInt8(ascii: "a")...UInt8(ascii: "z"): Int(c) - 0x61 + 38
        default: nil
        }
    }
}
