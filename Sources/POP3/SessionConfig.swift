/// SASL mechanisms the session knows how to frame (RFC 5034).
public enum SASLMechanism: String, Sendable, CaseIterable, Equatable {
    /// RFC 4616.
    case plain = "PLAIN"
    /// draft-murchison-sasl-login.
    case login = "LOGIN"
    /// RFC 2195.
    case cramMD5 = "CRAM-MD5"
    /// RFC 5802 with SHA-256 (RFC 7677), no channel binding.
    case scramSHA256 = "SCRAM-SHA-256"

    /// Mechanisms that carry the password in the clear; refused and not
    /// advertised when plaintext authentication is not allowed (RFC 5034 §4).
    public var isPlaintext: Bool {
        self == .plain || self == .login
    }

    /// Mechanisms that start with a server challenge: an initial response on the
    /// AUTH line is an error for them (RFC 5034 §4).
    var serverFirst: Bool { self == .cramMD5 }
}

/// Per-connection settings of a session (the glue builds one per accepted connection).
public struct SessionConfig: Sendable {
    /// Text of the greeting after `+OK `; must not contain CR or LF.
    public var banner: String
    /// The APOP timestamp `<pid.counter.time@host>` (RFC 1939 §7), unique per
    /// connection; it is also the base of the CRAM-MD5 challenge. The greeting
    /// shows it only when `apopEnabled` (a timestamp there offers APOP, §7).
    public var apopTimestamp: String
    /// IMPLEMENTATION capability text (RFC 2449 §6.9); nil leaves it out.
    public var implementation: String?
    /// EXPIRE capability argument (RFC 2449 §6.7): "NEVER" or days.
    public var expire: String
    /// LOGIN-DELAY capability argument in seconds (RFC 2449 §6.8); the glue enforces it.
    public var loginDelaySeconds: Int
    /// STLS can be offered on this connection (TLS configured, not implicit TLS).
    public var stlsAvailable: Bool
    /// The connection is already under TLS (implicit TLS port).
    public var tlsActive: Bool
    /// USER/PASS, APOP and plaintext SASL are allowed (TLS, loopback or trusted
    /// network); once STLS succeeds they are allowed whatever this says.
    public var plaintextAuthAllowed: Bool
    /// SASL mechanisms enabled (the server's `auth_mechanisms`), in CAPA order: CAPA's SASL
    /// line and a bare AUTH list only these (RFC 2449 §6.3), AUTH refuses the others.
    public var saslMechanisms: [SASLMechanism]
    /// APOP is enabled (`auth_mechanisms` has `apop`): the greeting carries the timestamp
    /// and the APOP command is accepted. Otherwise neither (RFC 1939 §7: the timestamp is
    /// the offer, so a server that cannot honour it must not show it).
    public var apopEnabled: Bool
    /// Bad commands (unknown, wrong state, bad syntax, control bytes, too long)
    /// after which the session answers `-ERR` and closes.
    public var maxBadCommands: Int
    /// Failed logins in one session after which it closes (issue 3: "close after a
    /// named number of failures in one session").
    public var maxAuthFailures: Int

    /// `pop3_enable_last` (Dovecot's name): the RFC 1725 `LAST` command exists in TRANSACTION
    /// state. Off: `LAST` is an unknown command (RFC 1939 removed it). Not a CAPA capability.
    public var lastEnabled = false
    /// `pop3_client_workarounds` for this session's RETR and TOP (`MessageEncoder`), fixed at
    /// connection time, so the sizes listed at login and the octets sent later follow the
    /// same rule even when SIGHUP changes the setting in between.
    public var clientWorkarounds: ClientWorkarounds = []

    /// Default of `maxBadCommands` (`max_bad_commands`, 1...1000).
    public static let defaultMaxBadCommands = 10
    /// Default of `maxAuthFailures` (`max_auth_failures`, 1...100).
    public static let defaultMaxAuthFailures = 3

    /// Per-connection settings; only `apopTimestamp` has no default. The defaults offer every
    /// SASL mechanism and APOP, no STLS, no plaintext login, no LAST, no workarounds.
    public init(
        banner: String = "POP3 server ready",
        apopTimestamp: String,
        implementation: String? = nil,
        expire: String = "NEVER",
        loginDelaySeconds: Int = 0,
        stlsAvailable: Bool = false,
        tlsActive: Bool = false,
        plaintextAuthAllowed: Bool = false,
        saslMechanisms: [SASLMechanism] = SASLMechanism.allCases,
        maxBadCommands: Int = SessionConfig.defaultMaxBadCommands,
        maxAuthFailures: Int = SessionConfig.defaultMaxAuthFailures,
        apopEnabled: Bool = true,
        lastEnabled: Bool = false,
        clientWorkarounds: ClientWorkarounds = []
    ) {
        self.banner = banner
        self.apopTimestamp = apopTimestamp
        self.implementation = implementation
        self.expire = expire
        self.loginDelaySeconds = loginDelaySeconds
        self.stlsAvailable = stlsAvailable
        self.tlsActive = tlsActive
        self.plaintextAuthAllowed = plaintextAuthAllowed
        self.saslMechanisms = saslMechanisms
        self.maxBadCommands = maxBadCommands
        self.maxAuthFailures = maxAuthFailures
        self.apopEnabled = apopEnabled
        self.lastEnabled = lastEnabled
        self.clientWorkarounds = clientWorkarounds
    }
}
