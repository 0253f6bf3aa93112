import Reactor

/// The load pattern a session follows after connecting.
enum Scenario: String, CaseIterable {
    /// Greeting, login, STAT, LIST, UIDL, RETR every message (or a sample), optional DELE, QUIT.
    case session
    /// Greeting, login, hold `hold` seconds, QUIT.
    case idle
    /// Greeting, login, `commands` NOOPs pipelined `depth` deep, QUIT.
    case noop
    /// Greeting, login, LIST n, `commands` times RETR n, QUIT.
    case retrBig = "retr-big"
    /// Greeting, QUIT.
    case connect

    var logsIn: Bool { self != .connect }
}

/// How a session logs in.
enum AuthMethod: String, CaseIterable {
    case user, apop, plain
}

/// Where bytes go. The session code only sees plaintext: TLS is a Reactor transport installed
/// on the connection (right after connect, or after STLS's "+OK").
enum TransportChoice: String, CaseIterable {
    /// Plain TCP.
    case plain
    /// Plain TCP, greeting, STLS (RFC 2595 §4), TLS handshake, then the scenario.
    case stls
    /// Implicit TLS (RFC 8314 §3.3): handshake first, then the greeting.
    case tls
}

/// Everything a run needs, validated.
struct BenchConfig {
    var scenario: Scenario
    var target: SocketAddress
    var sources: [SocketAddress?]
    var concurrency: Int
    /// Sessions to run in total (nil: run for `duration`).
    var count: Int?
    /// Seconds during which new sessions start (nil: run `count` sessions).
    var duration: Double?
    /// New connections per second (nil: as fast as slots free up).
    var ramp: Double?
    var auth: AuthMethod
    var transport: TransportChoice
    var credentials: [Credential]
    /// RETR only this many messages per session, spread evenly over the maildrop (nil: all).
    var sample: Int?
    var dele: Bool
    var hold: Double
    var depth: Int
    /// Commands per session for `noop` and `retr-big`.
    var commandsPerSession: Int
    var message: Int
    /// Reply timeout in ns: a server silent this long gets the connection closed (timeout error).
    var replyTimeoutNanoseconds: UInt64
    /// Hard end of the run in ns after start, whatever the server does.
    var hardDeadlineNanoseconds: UInt64
    var progress: Bool
    /// A PROXY protocol header sent first on every connection (nil: none).
    var proxy: ProxySending?
}
