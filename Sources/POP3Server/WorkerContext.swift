import CShim
import Glibc

/// What a worker process gets from its master, in one environment variable
/// (`WorkerContext.environmentName`), so that the worker can be a fresh exec of the same
/// binary with the same arguments (a restarted worker runs exactly what the master runs,
/// even after the file on disk was replaced).
///
/// Format (space-separated `key=value`): `id=2 master=1234 scoreboard=5 wake=6
/// listeners=3:plain:pop3,4:tls:pop3s`. Listener entries are `fd:plain|tls:name` (the name
/// may be empty). The descriptors are inherited without FD_CLOEXEC.
public struct WorkerContext: Sendable, Equatable {
    /// The variable's name. It lacks the `POP3D_` prefix on purpose: those are settings.
    public static let environmentName = "POP3DWORKER"

    /// 1-based worker id, shown as `worker=N` on the worker's log lines.
    public var id: Int
    /// The master's pid: a worker whose parent is not it exits (the master died first).
    public var masterPID: Int32
    /// The scoreboard memfd.
    public var scoreboardFD: Int32
    /// The master loop's eventfd: one 8-octet write wakes it (ready, reloaded).
    public var wakeFD: Int32
    /// The listening sockets the worker accepts on, in the master's order.
    public var listeners: [ListenerDescriptor]
    /// The metrics area's memfd (`MetricsShare`), when the master serves `/metrics`.
    public var metricsFD: Int32?

    /// One inherited listening socket, written `fd:plain|tls:name`.
    public struct ListenerDescriptor: Sendable, Equatable {
        /// The inherited descriptor.
        public var fd: Int32
        /// `tls`: implicit TLS (pop3s); `plain`: STLS if configured.
        public var implicitTLS: Bool
        /// The listener's name (`pop3`, `pop3s`); nil when the entry's name is empty.
        public var name: String?
        /// A listener entry from its parts.
        public init(fd: Int32, implicitTLS: Bool, name: String?) {
            self.fd = fd
            self.implicitTLS = implicitTLS
            self.name = name
        }
    }

    /// A context from its parts (the master, before the spawn).
    public init(id: Int, masterPID: Int32, scoreboardFD: Int32, wakeFD: Int32, listeners: [ListenerDescriptor],
                metricsFD: Int32? = nil) {
        self.metricsFD = metricsFD
        self.id = id
        self.masterPID = masterPID
        self.scoreboardFD = scoreboardFD
        self.wakeFD = wakeFD
        self.listeners = listeners
    }

    /// The variable's value.
    public var encoded: String {
        let list = listeners.map { "\($0.fd):\($0.implicitTLS ? "tls" : "plain"):\($0.name ?? "")" }
        let metrics = metricsFD.map { " metrics=\($0)" } ?? ""
        return "id=\(id) master=\(masterPID) scoreboard=\(scoreboardFD) wake=\(wakeFD) listeners=\(list.joined(separator: ","))\(metrics)"
    }

    /// Parses a value; nil when anything is missing or malformed (the caller says so and exits).
    public init?(parsing text: String) {
        var fields: [Substring: Substring] = [:]
        for part in text.split(separator: " ") {
            guard let eq = part.firstIndex(of: "=") else { return nil }
            fields[part[..<eq]] = part[part.index(after: eq)...]
        }
        guard let id = fields["id"].flatMap({ Int($0) }), id >= 1, id <= Scoreboard.maxWorkers,
              let master = fields["master"].flatMap({ Int32($0) }), master > 0,
              let board = fields["scoreboard"].flatMap({ Int32($0) }), board >= 0,
              let wake = fields["wake"].flatMap({ Int32($0) }), wake >= 0,
              let listenerText = fields["listeners"] else { return nil }
        var listeners: [ListenerDescriptor] = []
        for entry in listenerText.split(separator: ",") {
            let parts = entry.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, let fd = Int32(parts[0]), fd >= 0,
                  parts[1] == "plain" || parts[1] == "tls" else { return nil }
            listeners.append(ListenerDescriptor(fd: fd, implicitTLS: parts[1] == "tls",
                                                name: parts[2].isEmpty ? nil : String(parts[2])))
        }
        guard !listeners.isEmpty else { return nil }
        var metricsFD: Int32? = nil
        if let text = fields["metrics"] {
            guard let fd = Int32(text), fd >= 0 else { return nil }
            metricsFD = fd
        }
        self.init(id: id, masterPID: master, scoreboardFD: board, wakeFD: wake, listeners: listeners, metricsFD: metricsFD)
    }

    /// This process's context: nil when it is not a worker (no variable). A variable that
    /// does not parse is an error: a worker must never fall back to binding its own ports.
    public static func fromEnvironment() throws -> WorkerContext? {
        guard let raw = getenv(environmentName) else { return nil }
        let text = String(cString: raw)
        guard let context = WorkerContext(parsing: text) else {
            throw ConfigError("\(environmentName): '\(text)' is not a worker context (it is set by the master for its workers only)")
        }
        return context
    }

    /// Wakes the master's loop (it then reads the scoreboard).
    func wakeMaster() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(wakeFD, $0.baseAddress, 8) }
    }
}
