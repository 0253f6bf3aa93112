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

/// Where bytes go. Only plain TCP today; STLS and implicit TLS slot in here once the Reactor
/// has a TLS transport (the session code never touches the transport).
enum TransportChoice: String, CaseIterable {
    case plain
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
}
