/// One usable line of a passwd-file. Lines that cannot be used produce a
/// `Diagnostic` instead and no entry: that user cannot log in.
public struct UserEntry: Sendable, Hashable {
    /// The login name, compared byte for byte (case-sensitive, like Dovecot).
    public var user: String
    /// The password scheme of the stored secret (`{SCHEME}`; CRYPT when the field has no prefix).
    public var scheme: PasswordScheme
    /// The encoding the secret was stored in (`{SHA256.HEX}` → `.hex`).
    public var encoding: SecretEncoding
    /// The secret after decoding its encoding: the cleartext for PLAIN, the
    /// crypt string for the crypt schemes, the digest(+salt) for SHA/MD5
    /// schemes, the `iter,salt,stored,server` text for SCRAM-SHA-256.
    public var secret: [UInt8]
    /// uid and gid fields as written. Read but ignored for now: all mail is
    /// owned by the server's user (virtual users).
    public var uid: String?
    /// See `uid`.
    public var gid: String?
    /// Field 5 as written; unused.
    public var gecos: String?
    /// Home directory, for a `%h` mail location.
    public var home: String?
    /// Field 7 as written; unused.
    public var shell: String?
    /// Dovecot's space-separated `key=value` extra fields (field 8 onwards).
    public var extraFields: [String]
    /// A mail location for this user only, overriding the `mail` setting (SQL's `mail`
    /// column, issue 15; Dovecot's userdb field `mail`). Nil = the global one.
    public var mail: String?

    /// An entry from its fields; `encoding` nil means the scheme's default (`scheme.defaultEncoding`).
    public init(user: String, scheme: PasswordScheme, encoding: SecretEncoding? = nil, secret: [UInt8],
                uid: String? = nil, gid: String? = nil, gecos: String? = nil, home: String? = nil,
                shell: String? = nil, extraFields: [String] = [], mail: String? = nil) {
        self.user = user
        self.scheme = scheme
        self.encoding = encoding ?? scheme.defaultEncoding
        self.secret = secret
        self.uid = uid
        self.gid = gid
        self.gecos = gecos
        self.home = home
        self.shell = shell
        self.extraFields = extraFields
        self.mail = mail
    }

    /// True when the cleartext is known, which APOP and CRAM-MD5 need.
    public var hasPlainSecret: Bool { scheme == .plain }
}

extension UserEntry {
    /// Why a database row gives no usable entry; the message never holds the secret.
    public struct Problem: Error, Sendable, CustomStringConvertible {
        /// Why the row cannot be used, naming the user; never the secret.
        public var message: String
        /// `message`.
        public var description: String { message }
    }

    /// Builds the entry for a user database row (SQL, issue 15): `password` is the stored
    /// secret in passwd-file syntax (`{SCHEME}secret`, no prefix = CRYPT), `home` gives `%h`,
    /// `mail` overrides the mail location. Fails with the reason (never the secret) when the
    /// secret cannot be used, or is not UTF-8.
    public static func fromDatabase(user: String, password: [UInt8], home: String?, mail: String?) -> Result<UserEntry, Problem> {
        guard let text = String(validating: password, as: UTF8.self), !text.isEmpty else {
            return .failure(Problem(message: "user \"\(user)\": password is empty or not UTF-8: cannot log in"))
        }
        switch PasswdFile.parseStoredPassword(Substring(text), user: user) {
        case .success(let (spec, secret)):
            return .success(UserEntry(user: user, scheme: spec.scheme, encoding: spec.encoding, secret: secret,
                                      home: home, mail: mail))
        case .failure(let problem):
            return .failure(Problem(message: problem.message))
        }
    }
}

/// A problem found while reading a passwd-file, naming file and line (1-based).
/// Messages never contain the secret.
public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    /// The passwd-file's path.
    public var path: String
    /// The 1-based line number.
    public var line: Int
    /// What is wrong with the line (never the secret).
    public var message: String

    /// A diagnostic for `line` (1-based) of `path`.
    public init(path: String, line: Int, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    /// `path:line: message`, as compilers print it.
    public var description: String { "\(path):\(line): \(message)" }
}
