import CoreMetrics
import Glibc
import Prometheus
import POP3
import Reactor

/// The metrics of one pop3d process (issue 13; the catalogue is the README's "Metrics" table).
///
/// Instrumentation goes through swift-metrics' API (`Counter`, `CoreMetrics.Gauge`, `Timer`), backed by
/// a swift-prometheus `PrometheusCollectorRegistry` of this process that renders the
/// Prometheus text exposition format 0.0.4. Every series is created here, at start, at 0:
/// the series set is fixed by this catalogue (no label takes a user name, an address or any
/// other value from a client), so its size never grows with users or clients.
///
/// Lives on the loop thread. The handles are swift-prometheus' atomics, so an increment is
/// one relaxed atomic add behind one dynamic call; nothing is allocated per event.
public final class POP3Metrics {
    /// Buckets of `pop3d_loop_turn_duration_seconds`, seconds: from a busy but healthy turn
    /// (0.1 ms) to a stall anyone notices (1 s); `loop_lag_warning` defaults to 0.05.
    public static let loopTurnBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2_500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
    ]

    /// The swift-prometheus registry holding every series of the catalogue; `/metrics` renders it.
    public let registry: PrometheusCollectorRegistry
    let factory: HelpedPrometheusFactory

    let accepted: [CoreMetrics.Counter]  // by `ListenerLabel`
    let refused: [CoreMetrics.Counter]  // by `RefusalReason`
    let evicted: CoreMetrics.Counter
    let sessions: [CoreMetrics.Gauge]  // by `SessionStateLabel`
    let ended: [CoreMetrics.Counter]  // by `EndReasonLabel`
    let logins: [CoreMetrics.Counter]  // by mechanism × result
    let commands: [CoreMetrics.Counter]  // by `CommandKeyword.rawValue`, then unknown
    let retrievedMessages: CoreMetrics.Counter
    let retrievedBytes: CoreMetrics.Counter
    let topMessages: CoreMetrics.Counter
    let deletedMessages: CoreMetrics.Counter
    let tlsHandshakes: [CoreMetrics.Counter]  // by result × version
    let penalties: CoreMetrics.Counter
    let penaltySeconds: FloatingPointCounter
    let authQueue: CoreMetrics.Gauge
    let storageQueue: CoreMetrics.Gauge
    let loopTurn: CoreMetrics.Timer
    let userdbLookups: [CoreMetrics.Counter]  // by `UserDBResultLabel`
    let userdbOutages: CoreMetrics.Counter

    /// Creates every series of the catalogue at 0 in a new registry.
    public init() {
        registry = PrometheusCollectorRegistry()
        let f = HelpedPrometheusFactory(registry: registry)
        factory = f
        func counter(_ name: String, _ labels: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: labels, factory: f)
        }
        func gauge(_ name: String, _ labels: [(String, String)] = []) -> CoreMetrics.Gauge {
            CoreMetrics.Gauge(label: name, dimensions: labels, factory: f)
        }
        accepted = ListenerLabel.allCases.map { counter("pop3d_connections_accepted_total", [("listener", $0.rawValue)]) }
        refused = RefusalReason.allCases.map { counter("pop3d_connections_refused_total", [("reason", $0.rawValue)]) }
        evicted = counter("pop3d_connections_evicted_total")
        sessions = SessionStateLabel.allCases.map { gauge("pop3d_sessions", [("state", $0.rawValue)]) }
        ended = EndReasonLabel.allCases.map { counter("pop3d_sessions_ended_total", [("reason", $0.rawValue)]) }
        var logins: [CoreMetrics.Counter] = []
        for mechanism in LoginMechanism.allCases {
            for result in LoginResultLabel.allCases {
                logins.append(counter("pop3d_logins_total", [("mechanism", mechanism.metricLabel), ("result", result.rawValue)]))
            }
        }
        self.logins = logins
        commands = (CommandKeyword.allCases.map { "\($0)".uppercased() } + ["unknown"]).map {
            counter("pop3d_commands_total", [("command", $0)])
        }
        retrievedMessages = counter("pop3d_retrieved_messages_total")
        retrievedBytes = counter("pop3d_retrieved_bytes_total")
        topMessages = counter("pop3d_top_messages_total")
        deletedMessages = counter("pop3d_deleted_messages_total")
        var tls: [CoreMetrics.Counter] = []
        for result in ["ok", "failed"] {
            for version in TLSVersionLabel.allCases {
                tls.append(counter("pop3d_tls_handshakes_total", [("result", result), ("version", version.rawValue)]))
            }
        }
        tlsHandshakes = tls
        penalties = counter("pop3d_auth_penalties_total")
        penaltySeconds = FloatingPointCounter(label: "pop3d_auth_penalty_seconds_total", dimensions: [], factory: f)
        authQueue = gauge("pop3d_auth_queue_depth")
        storageQueue = gauge("pop3d_storage_queue_depth")
        loopTurn = CoreMetrics.Timer(label: "pop3d_loop_turn_duration_seconds", dimensions: [], factory: f)
        userdbLookups = UserDBResultLabel.allCases.map { counter("pop3d_userdb_lookups_total", [("result", $0.rawValue)]) }
        userdbOutages = counter("pop3d_userdb_outages_total")
        Self.recordProcessFacts(factory: f)
    }

    /// Families that describe the process rather than its sessions: a master renders its
    /// own and leaves out its workers'.
    static let processFamilies: Set<String> = ["pop3d_start_time_seconds", "pop3d_build_info"]

    /// `pop3d_start_time_seconds` (now) and `pop3d_build_info`.
    static func recordProcessFacts(factory f: HelpedPrometheusFactory) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        CoreMetrics.Gauge(label: "pop3d_start_time_seconds", dimensions: [], factory: f)
            .record(Double(now.tv_sec) + Double(now.tv_nsec) / 1e9)
        CoreMetrics.Gauge(label: "pop3d_build_info", dimensions: [("version", pop3dVersion), ("swift", swiftVersion)], factory: f)
            .record(1)
    }

    /// The compiler's language version, for `pop3d_build_info{swift=}`.
    static var swiftVersion: String {
        #if compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #else
        return "6"
        #endif
    }

    // MARK: events (called on the loop)

    @inline(__always) func accepted(implicitTLS: Bool) {
        accepted[implicitTLS ? ListenerLabel.pop3s.index : ListenerLabel.pop3.index].increment()
    }

    @inline(__always) func refused(_ reason: RefusalReason) { refused[reason.index].increment() }

    private static let mechanismPositions = casePositions(LoginMechanism.self)

    @inline(__always) func login(_ mechanism: LoginMechanism, _ result: LoginResultLabel) {
        let m = Self.mechanismPositions[mechanism] ?? 0
        logins[m * LoginResultLabel.allCases.count + result.index].increment()
    }

    /// One command line handled: `keyword` nil for a line that named no known command.
    @inline(__always) func command(_ keyword: CommandKeyword?) {
        commands[keyword.map { Int($0.rawValue) } ?? CommandKeyword.allCases.count].increment()
    }

    func tlsHandshake(ok: Bool, version: String?) {
        let v = TLSVersionLabel(protocolName: version)
        tlsHandshakes[(ok ? 0 : TLSVersionLabel.allCases.count) + v.index].increment()
    }

    func sessionEnded(_ reason: EndReason) { ended[EndReasonLabel(reason).index].increment() }

    /// One loop turn of `nanoseconds` (the reactor's turn observer).
    @inline(__always) func loopTurn(nanoseconds: UInt64) {
        loopTurn.recordNanoseconds(Int64(clamping: nanoseconds))
    }

    // MARK: rendering

    /// Sets the gauges that are read rather than counted (sessions by state, queue depths),
    /// then appends the exposition text of every series to `buffer`.
    func render(service: POP3Service, into buffer: inout [UInt8]) {
        let authorization = service.connectionCount - service.loggedInCount
        sessions[SessionStateLabel.authorization.index].record(max(0, authorization))
        sessions[SessionStateLabel.transaction.index].record(max(0, service.loggedInCount - service.updatingCount))
        sessions[SessionStateLabel.update.index].record(service.updatingCount)
        authQueue.record(service.pool.queuedJobs)
        storageQueue.record(service.storagePool.queuedJobs)
        registry.emit(into: &buffer)
    }
}

// MARK: label values (each a closed set: the series count is fixed)

/// Each case's position in `allCases`, built once per type: the counter arrays are indexed by
/// it. (`allCases.firstIndex` would build the cases array at every login and session end.)
func casePositions<T: CaseIterable & Hashable>(_: T.Type) -> [T: Int] {
    Dictionary(uniqueKeysWithValues: T.allCases.enumerated().map { ($1, $0) })
}

/// `listener` of `pop3d_connections_accepted_total`.
enum ListenerLabel: String, CaseIterable {
    case pop3, pop3s
    var index: Int { self == .pop3 ? 0 : 1 }
}

/// `reason` of `pop3d_connections_refused_total`: which limit refused a new connection.
enum RefusalReason: String, CaseIterable {
    /// `max_connections_per_ip`.
    case perAddressCap = "per_address_cap"
    /// `max_connections` (host-wide with workers).
    case totalCap = "total_cap"
    /// Every worker is at the connections its descriptor limit carries.
    case descriptorLimit = "descriptor_limit"
    /// SIGTERM: draining.
    case shuttingDown = "shutting_down"

    private static let positions = casePositions(Self.self)
    var index: Int { Self.positions[self] ?? 0 }
}

/// `state` of `pop3d_sessions`: RFC 1939's states (§3).
enum SessionStateLabel: String, CaseIterable {
    case authorization, transaction, update
    private static let positions = casePositions(Self.self)
    var index: Int { Self.positions[self] ?? 0 }
}

/// `result` of `pop3d_logins_total`: RFC 3206's distinctions.
/// `pop3d_userdb_lookups_total{result}` (`passdb: sql`, issue 15): how each user lookup was
/// answered.
enum UserDBResultLabel: String, CaseIterable {
    /// A fresh auth cache entry (found or unknown): no query.
    case cache
    /// The database found the user.
    case found
    /// The database has no such user.
    case unknown
    /// The database could not answer and no cached entry stood in (`-ERR [SYS/TEMP]`).
    case unavailable
    /// The database could not answer; an expired cached entry was used.
    case stale
    private static let positions = casePositions(Self.self)
    var index: Int { Self.positions[self] ?? 0 }
}

enum LoginResultLabel: String, CaseIterable {
    case ok
    /// Wrong secret or unknown user (`-ERR [AUTH]`).
    case authFailed = "auth_failed"
    /// The maildrop is locked by another session (`-ERR [IN-USE]`).
    case inUse = "in_use"
    /// RFC 2449 LOGIN-DELAY (`-ERR [LOGIN-DELAY]`).
    case loginDelay = "login_delay"
    /// `-ERR [SYS/TEMP]`: a full queue, a maildrop that could not be opened now.
    case tempFailure = "temp_failure"
    /// `-ERR [SYS/PERM]`: the maildrop is refused for good (a symbolic link, a bad location).
    case unavailable
    private static let positions = casePositions(Self.self)
    var index: Int { Self.positions[self] ?? 0 }
}

extension LoginResultLabel {
    init(_ outcome: LoginOutcome) {
        switch outcome {
        case .success: self = .ok
        case .authFailed: self = .authFailed
        case .inUse: self = .inUse
        case .loginDelay: self = .loginDelay
        case .temporaryFailure: self = .tempFailure
        case .permanentFailure: self = .unavailable
        }
    }
}

/// `version` of `pop3d_tls_handshakes_total` (OpenSSL's `SSL_get_version` names).
enum TLSVersionLabel: String, CaseIterable {
    case tls12 = "TLSv1.2"
    case tls13 = "TLSv1.3"
    /// An older protocol, or a handshake that failed before a version was agreed.
    case other
    init(protocolName: String?) {
        switch protocolName {
        case "TLSv1.2": self = .tls12
        case "TLSv1.3": self = .tls13
        default: self = .other
        }
    }
    private static let positions = casePositions(Self.self)
    var index: Int { Self.positions[self] ?? 0 }
}

/// `reason` of `pop3d_sessions_ended_total`: `EndReason` without its free text.
enum EndReasonLabel: String, CaseIterable {
    case quit, disconnected
    case idleTimeout = "idle_timeout"
    case loginTimeout = "login_timeout"
    case evicted
    case badCommands = "bad_commands"
    case authFailures = "auth_failures"
    case shutdown, reset
    case inputLimit = "input_limit"
    case outputLimit = "output_limit"
    case tlsFailure = "tls_failure"
    case messageUnreadable = "message_unreadable"
    case storageFailure = "storage_failure"
    case error

    init(_ reason: EndReason) {
        switch reason {
        case .clientQuit: self = .quit
        case .clientDisconnected: self = .disconnected
        case .idleTimeout: self = .idleTimeout
        case .loginTimeout: self = .loginTimeout
        case .evicted: self = .evicted
        case .tooManyBadCommands: self = .badCommands
        case .tooManyFailedLogins: self = .authFailures
        case .serverShutdown, .shutdownTimeout: self = .shutdown
        case .connectionReset: self = .reset
        case .inputLimitExceeded: self = .inputLimit
        case .outputLimitExceeded: self = .outputLimit
        case .tlsFailure: self = .tlsFailure
        case .messageUnreadable: self = .messageUnreadable
        case .storageFailure: self = .storageFailure
        case .error: self = .error
        }
    }
    private static let positions = casePositions(Self.self)
    var index: Int { Self.positions[self] ?? 0 }
}

// MARK: the factory

/// swift-prometheus' own `PrometheusMetricsFactory` registers every metric with an empty
/// HELP text, and its registry stops the process when one name is registered with two help
/// texts. This factory gives each family its HELP line from `help` (promtool's lint wants
/// one), and the loop-turn histogram its buckets.
struct HelpedPrometheusFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry

    static let help: [String: String] = [
        "pop3d_connections_accepted_total": "Connections accepted, by listener (pop3: 110/STLS, pop3s: 995).",
        "pop3d_connections_refused_total": "Connections refused with -ERR [SYS/TEMP] at accept, by the limit that refused them.",
        "pop3d_connections_evicted_total": "Pre-login connections closed to make room under max_unauthenticated.",
        "pop3d_sessions": "Sessions now, by RFC 1939 state.",
        "pop3d_sessions_ended_total": "Sessions ended, by reason.",
        "pop3d_logins_total": "Login attempts, by mechanism and result.",
        "pop3d_commands_total": "Command lines handled, by command (unknown: no known command).",
        "pop3d_retrieved_messages_total": "Messages sent by RETR.",
        "pop3d_retrieved_bytes_total": "Octets of messages sent by RETR, as the scan listing counts them.",
        "pop3d_top_messages_total": "Messages sent (in part) by TOP.",
        "pop3d_deleted_messages_total": "Messages removed in the UPDATE state.",
        "pop3d_tls_handshakes_total": "TLS handshakes (STLS and implicit TLS), by result and protocol version.",
        "pop3d_auth_penalties_total": "Login attempts that first waited out the failure penalty of their address.",
        "pop3d_auth_penalty_seconds_total": "Seconds of failure penalty waited.",
        "pop3d_auth_queue_depth": "Password hashes waiting for the hashing pool.",
        "pop3d_storage_queue_depth": "Maildrop jobs waiting for the storage pool.",
        "pop3d_userdb_lookups_total": "User lookups with passdb sql, by how they were answered (cache, found, unknown, unavailable, stale).",
        "pop3d_userdb_outages_total": "Times the SQL user database became unreachable (one per outage and process, however many logins it refused).",
        "pop3d_loop_turn_duration_seconds": "Duration of event loop turns (the extra latency every session of the process waits).",
        "pop3d_start_time_seconds": "Unix time the process started, seconds.",
        "pop3d_build_info": "pop3d's version and the Swift compiler version; always 1.",
        // The master's own, with workers > 1.
        "pop3d_workers": "Worker processes running (workers > 1).",
        "pop3d_worker_restarts_total": "Worker processes restarted by the master after an exit (workers > 1).",
    ]

    /// The family's name and HELP text (every family of the catalogue has one).
    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: Self.help[label] ?? label)
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: POP3Metrics.loopTurnBuckets)
    }

    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}

extension POP3Service {
    /// The `/metrics` body of this process (Prometheus text exposition format 0.0.4),
    /// appended to `buffer`; nothing when metrics are off (`metrics` nil).
    public func renderMetrics(into buffer: inout [UInt8]) {
        metrics?.render(service: self, into: &buffer)
    }

    /// Turns metrics on: creates the registry and hooks the loop's turn measurement.
    /// Called once, before the loop runs (ServerRunner, when `metrics_listen` is set or a
    /// master collects them).
    public func enableMetrics() {
        guard metrics == nil else { return }
        let m = POP3Metrics()
        metrics = m
        loop.turnObserver = { ns in m.loopTurn(nanoseconds: ns) }
    }
}
