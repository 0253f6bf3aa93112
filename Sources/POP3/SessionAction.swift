/// Credentials the glue must verify (Auth module, on its worker pool).
public enum AuthRequest: Equatable, Sendable {
    /// USER/PASS (`mechanism` `.user`), SASL PLAIN (`.plain`) and LOGIN (`.login`).
    case password(user: String, password: [UInt8], mechanism: LoginMechanism)
    /// APOP (RFC 1939 §7): `digest` is 32 lowercase hex digits of MD5(timestamp + secret).
    case apop(user: String, digest: String, timestamp: String)
    /// CRAM-MD5 (RFC 2195): `digest` is 32 lowercase hex digits of HMAC-MD5(secret, challenge).
    case cramMD5(user: String, digest: String, challenge: String)
    /// A SASL response that decodes to no credentials that could be checked: PLAIN that is not
    /// `[authzid] NUL authcid NUL passwd` with UTF-8 identities (RFC 4616 §2) or names another
    /// identity, a LOGIN name that is empty or not UTF-8 or an empty LOGIN password, CRAM-MD5
    /// that is not `user SP digest` (RFC 2195 §2). It cannot succeed, but it is a failed login
    /// like a wrong password (the glue logs it, counts it and delays the address's next attempt,
    /// as Dovecot's auth process does). `user` is the name as sent, any octets: PLAIN's authcid
    /// when the message has exactly two NULs, LOGIN's name, CRAM-MD5's text before the last
    /// space; empty when there is none (never anything that may be the password).
    case undecodable(user: [UInt8], mechanism: LoginMechanism)

    /// How the client tried to log in.
    public var mechanism: LoginMechanism {
        switch self {
        case .password(_, _, let mechanism), .undecodable(_, let mechanism): return mechanism
        case .apop: return .apop
        case .cramMD5: return .cramMD5
        }
    }

    /// The name for `Session.user` (the session-end line): an undecodable name with its
    /// invalid UTF-8 replaced by U+FFFD (the failed-login line logs its exact octets).
    var userName: String {
        switch self {
        case .password(let user, _, _), .apop(let user, _, _), .cramMD5(let user, _, _): return user
        case .undecodable(let user, _): return String(decoding: user, as: UTF8.self)
        }
    }
}

/// How a client tried to log in: USER/PASS and APOP (RFC 1939 §7) or a SASL mechanism
/// (RFC 5034). The failed-login log line's `mechanism=` and the login metrics' label.
public enum LoginMechanism: Equatable, Hashable, Sendable, CaseIterable {
    /// USER/PASS (RFC 1939 §7).
    case user
    /// APOP (RFC 1939 §7).
    case apop
    /// SASL PLAIN (RFC 4616).
    case plain
    /// SASL LOGIN (draft-murchison-sasl-login).
    case login
    /// SASL CRAM-MD5 (RFC 2195).
    case cramMD5
    /// SASL SCRAM-SHA-256 (RFC 7677).
    case scramSHA256

    /// The login mechanism of a SASL mechanism (PLAIN → `.plain` ...).
    public init(_ sasl: SASLMechanism) {
        switch sasl {
        case .plain: self = .plain
        case .login: self = .login
        case .cramMD5: self = .cramMD5
        case .scramSHA256: self = .scramSHA256
        }
    }

    /// As the log writes it: the command (`USER`, `APOP`) or the SASL mechanism's registered
    /// name (`PLAIN`, `LOGIN`, `CRAM-MD5`, `SCRAM-SHA-256`), as in Dovecot's `method=`.
    public var logName: String {
        switch self {
        case .user: return "USER"
        case .apop: return "APOP"
        case .plain: return SASLMechanism.plain.rawValue
        case .login: return SASLMechanism.login.rawValue
        case .cramMD5: return SASLMechanism.cramMD5.rawValue
        case .scramSHA256: return SASLMechanism.scramSHA256.rawValue
        }
    }

    /// A Prometheus label value: the log name in lower case (`user`, `apop`, `plain`, `login`,
    /// `cram-md5`, `scram-sha-256`); six values, so the label's cardinality is bounded.
    public var metricLabel: String {
        switch self {
        case .user: return "user"
        case .apop: return "apop"
        case .plain: return "plain"
        case .login: return "login"
        case .cramMD5: return "cram-md5"
        case .scramSHA256: return "scram-sha-256"
        }
    }
}

/// One decoded client message of a SASL mechanism the session only relays
/// (SCRAM-SHA-256, whose server side lives in the Auth module).
///
/// Flow: `AUTH SCRAM-SHA-256 [ir]` → `.saslStep(index 0, client-first)`; the glue
/// answers `saslChallenge(server-first)`; → `.saslStep(index 1, client-final)`;
/// the glue verifies and answers `saslChallenge(server-final)` (RFC 5034 §4: POP3
/// has no additional data on +OK) or `loginFinished(.authFailed)`;
/// → `.saslStep(index 2, empty)`; the glue opens the maildrop and calls
/// `loginFinished(.success)`. Index 0 always starts a new exchange: a cancelled
/// one (`*`, answered by the session) leaves nothing the glue must clean up.
public struct SASLStep: Equatable, Sendable {
    /// The relayed mechanism (today only SCRAM-SHA-256).
    public var mechanism: SASLMechanism
    /// 0 for client-first, 1 for client-final, 2 for the empty response after server-final (RFC 5034 §4).
    public var index: Int
    /// The client's message, base64-decoded.
    public var message: [UInt8]

    /// A step of `mechanism` carrying the client's `message` number `index`.
    public init(mechanism: SASLMechanism, index: Int, message: [UInt8]) {
        self.mechanism = mechanism
        self.index = index
        self.message = message
    }
}

/// What the glue must do after a session call. Replies are already written, except for
/// `.openMessage` and `.startTLS`, whose reply waits until the glue has secured the resource
/// (issue 10 item 2: never `+OK` before what it promises can no longer fail).
public enum SessionAction: Equatable, Sendable {
    /// Nothing: read the next line.
    case none
    /// Verify credentials, stop reading input, then call `loginFinished`.
    case authenticate(AuthRequest)
    /// Call `produceMore` while the output queue is below its low-water mark.
    case produce
    /// RETR/TOP of message `index` (0-based): NOTHING is written yet. Open (or locate after
    /// a rename) the message file, then call `messageOpened`, which answers `+OK` and returns
    /// `.streamMessage`, or answers `-ERR` and lets the session go on. No input is read
    /// in between.
    case openMessage(index: Int, bodyLines: Int?)
    /// The `+OK` line is written (by `messageOpened(.opened)`): stream message `index`
    /// (0-based) through a `MessageEncoder(bodyLines:)` (nil = RETR, n = TOP), then its
    /// terminator.
    case streamMessage(index: Int, bodyLines: Int?)
    /// STLS accepted: NOTHING is written yet. Create the TLS session, then call
    /// `stlsReady(_:out:)`; after its `+OK`, discard input buffered after the STLS line,
    /// handshake, then call `tlsStarted()` (RFC 2595 §4; CVE-2011-0411 class).
    case startTLS
    /// QUIT in TRANSACTION: delete these 0-based indices (maybe none), release
    /// the maildrop, then call `updateFinished`.
    case commitDeletions([Int])
    /// Flush output, then close.
    case close
    /// Relay a SASL message to the Auth module; stop reading until
    /// `saslChallenge` or `loginFinished`.
    case saslStep(SASLStep)
}

/// The glue's answer to `.authenticate` / `.saslStep`.
public enum LoginOutcome: Equatable, Sendable {
    /// Logged in, the maildrop open and locked: `+OK maildrop has N messages (M octets)`, TRANSACTION.
    case success(MaildropListing)
    /// Wrong credentials or unknown user: `-ERR [AUTH]`, closing at `maxAuthFailures` (RFC 3206 §4).
    case authFailed
    /// Another session holds the maildrop: `-ERR [IN-USE]` (RFC 2449 §8.1.2).
    case inUse
    /// LOGIN-DELAY not elapsed: `-ERR [LOGIN-DELAY]` (RFC 2449 §8.1.1).
    case loginDelay
    /// `-ERR [SYS/TEMP] text` (RFC 3206 §4), control octets of `text` sent as spaces.
    case temporaryFailure(String)
    /// `-ERR [SYS/PERM] text` (RFC 3206 §4), control octets of `text` sent as spaces.
    case permanentFailure(String)
}

/// The glue's answer to `.openMessage`: what opening the message file gave.
public enum MessageOpenOutcome: Equatable, Sendable {
    /// The file is open: `+OK`, then the stream.
    case opened
    /// The file is gone (another program expunged it since login; no rename found it again):
    /// `-ERR [SYS/TEMP] message N was removed by another program`.
    case gone
    /// The file is there but cannot be read (EACCES, EIO, no longer a regular file):
    /// `-ERR [SYS/TEMP] message N cannot be read`.
    case unreadable
}

/// The maildrop as the session sees it at login.
public struct MaildropListing: Equatable, Sendable {
    /// Exact octets RETR sends for each message (CRLF line ends, before dot-stuffing).
    public var sizes: [Int]
    /// UIDL unique-ids (RFC 1939 §7: 1 to 70 characters in 0x21...0x7E).
    public var uids: [String]
    /// `UIDLChange(uids: uids)`, computed where the listing was made (a storage worker for a
    /// large maildrop); nil lets the session compute it.
    public var uidlChange: UIDLChange?
    /// The highest message number (1-based) whose file is marked seen (the Maildir `S` flag),
    /// 0 for none: where RFC 1725 `LAST` starts (Dovecot's rule). Used only with `LAST` on.
    public var lastSeen: Int

    /// A listing of `sizes` (octets, CRLF rule) and `uids`, in message-number order, equal in count.
    public init(sizes: [Int], uids: [String], uidlChange: UIDLChange? = nil, lastSeen: Int = 0) {
        self.sizes = sizes
        self.uids = uids
        self.uidlChange = uidlChange
        self.lastSeen = lastSeen
    }
}

/// Figures for the end-of-session log line, in Dovecot's `pop3_logout_format` terms where it
/// has one (`top=%{top_count}/%{top_bytes}, retr=%{retr_count}/%{retr_bytes},
/// del=%{deleted_count}/%{deleted_bytes}, size=%{message_bytes}`, `%{uidl_change}`). Every
/// octet figure saturates at `Int.max`.
public struct SessionCounters: Equatable, Sendable {
    /// Command lines handled, bad and too-long ones included (not SASL responses, nor lines
    /// refused with `-ERR busy` while a reply is still being produced).
    public var commands = 0
    /// RETR commands answered `+OK` and the listed octets of those messages (Dovecot's
    /// `retr_count`; Dovecot's `retr_bytes` counts its output instead, dot-stuffing included).
    public var messagesRetrieved = 0
    /// Sum of the listed sizes of the messages RETRieved (octets, saturating).
    public var octetsRetrieved = 0
    /// TOP commands answered `+OK` (Dovecot's `top_count`) and the octets their output carried,
    /// counted as the listing counts a message (CRLF line ends, without the stuffing dots and
    /// the terminator; a TOP cut short by a closed connection adds nothing).
    public var topCount = 0
    /// Sum of TOP's output octets (listing rule, saturating).
    public var topOctets = 0
    /// Messages removed in UPDATE (RFC 1939 §6) and their octets as the listing at login gave
    /// them (Dovecot's `deleted_count`, `deleted_bytes`); those UPDATE could not remove are
    /// not counted. 0 when the session did not reach UPDATE.
    public var messagesDeleted = 0
    /// Sum of the listed sizes of the messages removed in UPDATE (octets).
    public var octetsDeleted = 0
    /// Bad commands (unknown, wrong state, bad syntax, control octets, too long) counted towards
    /// `SessionConfig.maxBadCommands`.
    public var badCommands = 0
    /// Failed logins counted towards `SessionConfig.maxAuthFailures`.
    public var authFailures = 0
    /// The maildrop's octets at login, as the login reply and STAT gave them (Dovecot's
    /// `message_bytes`); nil when the session never logged in.
    public var maildropOctetsAtLogin: Int?
    /// The unique-id listing at login (`UIDLChange`); nil when the session never logged in.
    public var uidlChange: UIDLChange?

    /// All figures zero or nil.
    public init() {}
}
