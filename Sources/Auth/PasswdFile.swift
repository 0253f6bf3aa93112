import Glibc
import SystemCalls

/// A passwd-file that cannot be read at all; a reload keeps the old table.
public struct PasswdFileError: Error, Sendable, CustomStringConvertible {
    /// The passwd-file's path as configured.
    public var path: String
    /// The errno of the failing call (EINVAL: not a regular file; EFBIG: over `PasswdFile.maxFileSize`).
    public var errno: Int32
    /// What failed: `cannot open`, `cannot stat`, `not a regular file`, `larger than N bytes`,
    /// `cannot read`.
    public var reason: String

    /// `path: reason (errno N)`.
    public var description: String { "\(path): \(reason) (errno \(errno))" }
}

/// Dovecot's passwd-file: `user:{SCHEME}secret:uid:gid:gecos:home:shell:extra`,
/// fields after the password optional, `#` comments and blank lines ignored.
/// A secret without `{...}` is CRYPT, as in Dovecot's passwd-file driver.
public struct PasswdFile: Sendable {
    /// Largest file read, so a wrong path (a log, a device) cannot eat memory.
    public static let maxFileSize = 64 << 20

    /// The path the file was read from (reloads read it again).
    public let path: String
    /// Keyed by the name's octets: canonically equivalent names are different users.
    private var entries: [UserName: UserEntry]
    /// Verified against when the user is unknown, so that an unknown user costs
    /// what the commonest scheme of this file costs (see `verifyOrDummy`).
    let dummyEntry: UserEntry

    /// Usable entries (lines that gave a `Diagnostic` are not counted).
    public var count: Int { entries.count }

    /// The entry whose name has exactly these octets (Dovecot compares user names as bytes).
    public func lookup(_ user: String) -> UserEntry? { entries[UserName(user)] }

    /// The entry whose name has exactly these octets, or nil.
    public func lookup(_ user: UserName) -> UserEntry? { entries[user] }

    /// Reads and parses the file. Throws only when the file cannot be read;
    /// bad lines become diagnostics.
    public static func load(path: String) throws -> (PasswdFile, [Diagnostic]) {
        let bytes = try readFile(path)
        return parse(bytes, path: path)
    }

    /// Parses file contents; `path` only names the file in diagnostics.
    public static func parse(_ bytes: [UInt8], path: String) -> (PasswdFile, [Diagnostic]) {
        var entries: [UserName: UserEntry] = [:]
        var diagnostics: [Diagnostic] = []
        var lineNumber = 0
        for rawLine in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = rawLine
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            let firstNonBlank = line.first { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
            if firstNonBlank == nil || firstNonBlank == UInt8(ascii: "#") { continue }
            switch parseLine(line) {
            case .success(let entry):
                let key = UserName(entry.user)
                if entries[key] != nil {
                    diagnostics.append(Diagnostic(path: path, line: lineNumber,
                                                  message: "duplicate user \"\(entry.user)\": the first line wins"))
                } else {
                    entries[key] = entry
                }
            case .failure(let problem):
                diagnostics.append(Diagnostic(path: path, line: lineNumber, message: problem.message))
            }
        }
        let file = PasswdFile(path: path, entries: entries, dummyEntry: chooseDummy(entries))
        return (file, diagnostics)
    }

    struct LineProblem: Error { var message: String }

    static func parseLine(_ line: ArraySlice<UInt8>) -> Result<UserEntry, LineProblem> {
        guard String(validating: line, as: UTF8.self) != nil else {
            return .failure(LineProblem(message: "line is not valid UTF-8: ignored"))
        }
        // Split at the octet ':', as Dovecot does. Splitting the String would not: a ':'
        // followed by a combining mark is one Character, so a name or a password could hold a
        // colon that ends the field for Dovecot (found by the fuzz-passwd target). Pieces of
        // valid UTF-8 cut at an ASCII octet are valid UTF-8.
        let fields = line.split(separator: UInt8(ascii: ":"), maxSplits: 7, omittingEmptySubsequences: false)
            .map { String(decoding: $0, as: UTF8.self) }
        let user = fields[0]
        guard !user.isEmpty else { return .failure(LineProblem(message: "empty user name: line ignored")) }
        guard user.utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7f }) else {
            return .failure(LineProblem(message: "user name contains blanks or control characters: line ignored"))
        }
        guard fields.count >= 2, !fields[1].isEmpty else {
            return .failure(LineProblem(message: "user \"\(user)\" has no password: cannot log in"))
        }
        let spec: SchemeSpec, secret: [UInt8]
        switch parseStoredPassword(fields[1][...], user: user) {
        case .success(let parsed): (spec, secret) = parsed
        case .failure(let problem): return .failure(problem)
        }
        func field(_ i: Int) -> String? { i < fields.count && !fields[i].isEmpty ? fields[i] : nil }
        // Extra fields: separated by the space octet, for the same reason.
        let extra = field(7).map { $0.utf8.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) } } ?? []
        return .success(UserEntry(user: user, scheme: spec.scheme, encoding: spec.encoding, secret: secret,
                                  uid: field(2), gid: field(3), gecos: field(4), home: field(5),
                                  shell: field(6), extraFields: extra))
    }

    /// Parses a stored password as the passwd-file's second field (and SQL's `password`
    /// column) holds it: `{SCHEME}secret`, `{SCHEME.HEX}`/`{SCHEME.B64}` for an explicit
    /// encoding, no prefix = CRYPT (Dovecot's passwd-file default). The problem names `user`.
    static func parseStoredPassword(_ stored: Substring, user: String) -> Result<(SchemeSpec, [UInt8]), LineProblem> {
        let spec: SchemeSpec
        var secretText: Substring
        // Octets, as Dovecot reads them: a Character search would take "}" followed by a
        // combining mark for one grapheme and miss the brace.
        if stored.utf8.first == UInt8(ascii: "{") {
            guard let close = stored.utf8.firstIndex(of: UInt8(ascii: "}")) else {
                return .failure(LineProblem(message: "user \"\(user)\": unterminated {SCHEME} prefix: cannot log in"))
            }
            let name = stored[stored.utf8.index(after: stored.startIndex)..<close]
            guard let s = SchemeSpec(name) else {
                return .failure(LineProblem(message: "user \"\(user)\": unknown password scheme {\(name)}: cannot log in"))
            }
            spec = s
            secretText = stored[stored.utf8.index(after: close)...]
        } else {
            spec = SchemeSpec(scheme: .crypt, encoding: .none)
            secretText = stored
        }
        guard let secret = spec.decode(Array(secretText.utf8)) else {
            return .failure(LineProblem(message: "user \"\(user)\": {\(spec.scheme.rawValue)} secret is not valid \(spec.encoding == .hex ? "hex" : "base64"): cannot log in"))
        }
        if let problem = SecretCheck.problem(scheme: spec.scheme, secret: secret) {
            return .failure(LineProblem(message: "user \"\(user)\": \(problem): cannot log in"))
        }
        return .success((spec, secret))
    }

    /// A representative entry to burn time against for unknown users: the
    /// first entry of the commonest scheme (same cost parameters as real
    /// users), or a SHA512-CRYPT setting when the file is empty.
    static func chooseDummy(_ entries: [UserName: UserEntry]) -> UserEntry {
        var counts: [PasswordScheme: Int] = [:]
        for e in entries.values { counts[e.scheme, default: 0] += 1 }
        if let common = counts.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue < $1.key.rawValue) })?.key,
           let sample = entries.values.filter({ $0.scheme == common }).min(by: { $0.user.utf8.lexicographicallyPrecedes($1.user.utf8) }) {
            return UserEntry(user: "", scheme: sample.scheme, encoding: sample.encoding, secret: sample.secret)
        }
        return UserEntry(user: "", scheme: .sha512Crypt, secret: Array(defaultDummyCrypt.utf8))
    }

    /// crypt_r hashes from the setting part only, so any hash text after it works.
    public static let defaultDummyCrypt = "$6$pop3ddummysalt0$" + String(repeating: "x", count: 86)

    /// Reads the whole file. Opened with `O_NONBLOCK` and checked with `fstat` before any
    /// read: a FIFO (or a device) at the path would otherwise block the open or the read
    /// forever, or feed endless bytes; anything that is not a regular file is refused.
    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw PasswdFileError(path: path, errno: errno, reason: "cannot open") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw PasswdFileError(path: path, errno: errno, reason: "cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw PasswdFileError(path: path, errno: EINVAL, reason: "not a regular file")
        }
        guard st.st_size <= maxFileSize else {
            throw PasswdFileError(path: path, errno: EFBIG, reason: "larger than \(maxFileSize) bytes")
        }
        var result: [UInt8] = []
        result.reserveCapacity(Int(st.st_size))
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let read = chunk.withUnsafeMutableBytes { raw in
                Result { () throws(SyscallError) -> Int in try syscallBlocking("read") { Glibc.read(fd, raw.baseAddress, raw.count) } }
            }
            let n: Int
            switch read {
            case .success(let count): n = count
            case .failure(let error): throw PasswdFileError(path: path, errno: error.errno, reason: "cannot read")
            }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
            if result.count > maxFileSize {
                throw PasswdFileError(path: path, errno: EFBIG, reason: "larger than \(maxFileSize) bytes")
            }
        }
        return result
    }

    private init(path: String, entries: [UserName: UserEntry], dummyEntry: UserEntry) {
        self.path = path
        self.entries = entries
        self.dummyEntry = dummyEntry
    }
}

extension PasswdFile {
    /// What an unknown user's password is verified against (see `verifyOrDummy`).
    public var dummy: UserEntry { dummyEntry }

    /// Verifies `password` for `user`. An unknown user still costs one
    /// verification against `dummyEntry`, so unknown user and wrong password
    /// take comparable time and give the same nil.
    public func verifyOrDummy(user: String, password: [UInt8]) -> UserEntry? {
        guard let entry = entries[UserName(user)] else {
            _ = Auth.verify(password: password, entry: dummyEntry)
            return nil
        }
        return Auth.verify(password: password, entry: entry) ? entry : nil
    }
}

extension PasswordScheme {
    /// One digest over the password and a salt: microseconds, fine on the event loop. The
    /// crypt(3) family and SCRAM (PBKDF2) are deliberately slow and go to the worker pool.
    public var isCheap: Bool {
        switch self {
        case .plain, .ssha, .ssha256, .ssha512, .sha1, .sha256, .sha512, .plainMD5, .ldapMD5, .smd5: true
        case .crypt, .md5Crypt, .sha256Crypt, .sha512Crypt, .blfCrypt, .scramSHA256: false
        }
    }
}

extension PasswdFile {
    /// Whether verifying `user`'s password is cheap enough to do on the loop. An unknown user
    /// is judged by the dummy entry `verifyOrDummy` would use, so the choice (and its timing)
    /// does not tell whether the user exists.
    public func verificationIsCheap(user: String) -> Bool {
        (entries[UserName(user)] ?? dummyEntry).scheme.isCheap
    }
}

extension PasswdFile {
    /// Users per password scheme, for the start-up and reload check of `auth_mechanisms`
    /// (which mechanisms can work with which secrets). O(users) and read-only: call it
    /// where the file is loaded (off the event loop for a reload), not per login.
    public var usersByScheme: [PasswordScheme: Int] {
        var counts: [PasswordScheme: Int] = [:]
        for entry in entries.values { counts[entry.scheme, default: 0] += 1 }
        return counts
    }
}
