/// Credentials the glue must verify (Auth module, on its worker pool).
public enum AuthRequest: Equatable, Sendable {
    /// USER/PASS, SASL PLAIN and LOGIN.
    case password(user: String, password: [UInt8])
    /// APOP (RFC 1939 §7): `digest` is 32 lowercase hex digits of MD5(timestamp + secret).
    case apop(user: String, digest: String, timestamp: String)
    /// CRAM-MD5 (RFC 2195): `digest` is 32 lowercase hex digits of HMAC-MD5(secret, challenge).
    case cramMD5(user: String, digest: String, challenge: String)
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
    public var mechanism: SASLMechanism
    public var index: Int
    public var message: [UInt8]

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
    case success(MaildropListing)
    case authFailed
    case inUse
    case loginDelay
    case temporaryFailure(String)
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

    public init(sizes: [Int], uids: [String]) {
        self.sizes = sizes
        self.uids = uids
    }
}

/// Figures for the end-of-session log line.
public struct SessionCounters: Equatable, Sendable {
    public var commands = 0
    public var messagesRetrieved = 0
    public var octetsRetrieved = 0
    public var messagesDeleted = 0
    public var badCommands = 0
    public var authFailures = 0

    public init() {}
}
