import ByteCodec
import Glibc
import POP3

/// One user's login lines, built once at start so sessions send bytes without building strings.
struct Credential {
    let user: String
    let password: String
    /// "USER name\r\n"
    let userLine: [UInt8]
    /// "PASS secret\r\n"
    let passLine: [UInt8]
    /// "AUTH PLAIN base64(\0user\0secret)\r\n" (RFC 5034 §4: initial response allowed).
    let plainLine: [UInt8]

    init(user: String, password: String) {
        self.user = user
        self.password = password
        userLine = Array("USER \(user)\r\n".utf8)
        passLine = Array("PASS \(password)\r\n".utf8)
        let message = [0] + Array(user.utf8) + [0] + Array(password.utf8)
        plainLine = Array("AUTH PLAIN ".utf8) + Base64.encode(message) + [0x0D, 0x0A]
    }
}

enum CredentialError: Error, CustomStringConvertible {
    case badPattern(String)
    case unreadable(String)
    case noUsableUsers(String)

    var description: String {
        switch self {
        case .badPattern(let p): "bad user/password pattern \(p) (use one %d or %0Nd)"
        case .unreadable(let f): "cannot read passwd-file \(f)"
        case .noUsableUsers(let f): "no user with a {PLAIN} (or {CLEAR}) secret in \(f)"
        }
    }
}

enum Credentials {
    /// Most users a pattern or file may yield (bounds memory and start-up time).
    static let maxUsers = 1_000_000

    /// Expands a printf-like pattern with one `%d` or `%0Nd` (a pattern without one is used as is).
    static func expand(_ pattern: String, _ index: Int) throws -> String {
        guard let percent = pattern.firstIndex(of: "%") else { return pattern }
        var spec = pattern[pattern.index(after: percent)...]
        var width = 0
        var zero = false
        if spec.first == "0" { zero = true; spec = spec.dropFirst() }
        while let c = spec.first, let digit = c.wholeNumberValue, c.isASCII {
            width = width * 10 + digit
            spec = spec.dropFirst()
            if width > 20 { throw CredentialError.badPattern(pattern) }
        }
        guard spec.first == "d" else { throw CredentialError.badPattern(pattern) }
        let rest = spec.dropFirst()
        if rest.contains("%") { throw CredentialError.badPattern(pattern) }
        var number = String(index)
        if number.count < width { number = String(repeating: zero ? "0" : " ", count: width - number.count) + number }
        return String(pattern[..<percent]) + number + String(rest)
    }

    static func fromPattern(users: String, passwords: String, count: Int, first: Int) throws -> [Credential] {
        try (0..<min(max(count, 1), maxUsers)).map { i in
            Credential(user: try expand(users, first + i), password: try expand(passwords, first + i))
        }
    }

    /// Reads a Dovecot passwd-file (`user:{SCHEME}secret:...`) and keeps users whose secret is in
    /// the clear: a load generator must know the password it sends.
    static func fromPasswdFile(_ path: String) throws -> [Credential] {
        guard let file = fopen(path, "r") else { throw CredentialError.unreadable(path) }
        defer { fclose(file) }
        var result: [Credential] = []
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line, result.count < maxUsers {
            let text = String(cString: line).trimmingSuffix()
            if text.isEmpty || text.hasPrefix("#") { continue }
            let fields = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count >= 2, !fields[0].isEmpty else { continue }
            var secret = fields[1]
            for scheme in ["{PLAIN}", "{CLEAR}", "{CLEARTEXT}"] where secret.uppercased().hasPrefix(scheme) {
                secret = secret.dropFirst(scheme.count)
                result.append(Credential(user: String(fields[0]), password: String(secret)))
                break
            }
        }
        if result.isEmpty { throw CredentialError.noUsableUsers(path) }
        return result
    }
}

extension String {
    fileprivate func trimmingSuffix() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" || last == "\r\n" { s = s.dropLast() }
        return String(s)
    }
}
