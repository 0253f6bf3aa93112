import Glibc
import Logging
import Synchronization

/// One line per event on stderr. When stderr is the journal (`JOURNAL_STREAM` set by
/// systemd) each line starts with its syslog priority (`<6>`), which journald turns into
/// the entry's priority instead of logging everything at "info".
public struct StderrLogHandler: LogHandler {
    /// The level: the shared one when the handler has one (every handler `bootstrapLogging`
    /// installs shares `SharedLogLevel.process`, so a reload changes every logger at once).
    public var logLevel: Logger.Level {
        get { shared?.level ?? ownLevel }
        set {
            if let shared { shared.level = newValue } else { ownLevel = newValue }
        }
    }
    private var ownLevel: Logger.Level
    private let shared: SharedLogLevel?
    /// Metadata written on every line of this handler (`worker=N` in a worker), sorted by key.
    public var metadata: Logger.Metadata = [:]
    let label: String
    let journal: Bool

    /// A handler named `label`; with `shared`, its level is the shared one and `level` is unused.
    /// Reads `JOURNAL_STREAM` once to choose the journal form (`<priority>` prefix, no timestamp).
    public init(label: String, level: Logger.Level, shared: SharedLogLevel? = nil) {
        self.label = label
        self.ownLevel = level
        self.shared = shared
        self.journal = getenv("JOURNAL_STREAM") != nil
    }

    /// One key of `metadata`.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Writes one line with one write(2) to descriptor 2: `<priority>` (journal) or an RFC 3339 UTC
    /// timestamp with milliseconds, the level, the escaped message, then `key=value` metadata sorted
    /// by key, values escaped (`LogEscaping`). Not filtered here: swift-log checks `logLevel` first.
    public func log(event: LogEvent) {
        var line = render(level: event.level, message: event.message.description, metadata: event.metadata)
        line += "\n"
        // One write(2) per line, after the session-end lines batched before it (`LogBatch`):
        // lines from several processes on one journal stream never interleave.
        LogBatch.standardError.write(line: Array(line.utf8))
    }

    /// One log line without its newline: prefix, level, escaped message, sorted metadata.
    func render(level: Logger.Level, message: String, metadata extra: Logger.Metadata?) -> String {
        var line = ""
        if journal {
            line += "<\(Self.priority(level))>"
        } else {
            line += Self.timestamp() + " "
        }
        // The message text carries file names and error descriptions (`"maildrop: \(error)"`):
        // it is escaped too, so nothing in it can start a line of its own.
        line += "\(level) " + LogEscaping.text(message)
        var all = metadata
        if let extra { all.merge(extra) { $1 } }
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            line += " " + LogEscaping.text(key) + "=" + Self.escaped(value)
        }
        return line
    }

    /// A metadata value as the line writes it: octets given as octets (`LoggedOctets`: a user
    /// name that may not be UTF-8) are escaped as octets, everything else as its text.
    static func escaped(_ value: Logger.Metadata.Value) -> String {
        if case .stringConvertible(let convertible) = value, let octets = convertible as? LoggedOctets {
            return LogEscaping.value(bytes: octets.octets)
        }
        return LogEscaping.value("\(value)")
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return timestamp(ts)
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `ts` (UTC).
    static func timestamp(_ ts: timespec) -> String {
        var t = ts.tv_sec
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &tmv)
        let base = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let ms = Int(ts.tv_nsec / 1_000_000)
        return base + "." + (ms < 10 ? "00" : ms < 100 ? "0" : "") + "\(ms)Z"
    }

    /// `YYYY-MM-DDTHH:MM:SS` of `seconds` since the epoch (UTC), as `timestamp` begins: the
    /// part `TimestampCache` keeps for a second.
    static func secondsText(_ seconds: Int) -> [UInt8] {
        var t = seconds
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &tmv)
        return buffer.prefix(n).map { UInt8(bitPattern: $0) }
    }
}

/// Installs the stderr handler for every logger of the process.
public func bootstrapLogging(level: String, worker: Int? = nil) -> Logger {
    let parsed = Logger.Level(rawValue: level) ?? .info
    // A worker of a master stamps `worker=N` on every line it writes, session ends included,
    // so one journal stream tells the workers apart (the master's own lines carry none).
    SharedLogLevel.process.level = parsed
    LoggingSystem.bootstrap { label in
        var handler = StderrLogHandler(label: label, level: parsed, shared: .process)
        if let worker { handler.metadata["worker"] = "\(worker)" }
        return handler
    }
    return Logger(label: "pop3d")
}

/// One log level for every handler of the process, so `log_level` can change on SIGHUP
/// without finding every `Logger` copy (each holds its own handler value).
public final class SharedLogLevel: Sendable {
    /// The process's: used by every handler `bootstrapLogging` installs.
    public static let process = SharedLogLevel(.info)
    private let raw: Atomic<Int>

    /// A shared level starting at `level`.
    public init(_ level: Logger.Level) { raw = Atomic(Self.index(level)) }

    /// Read at every log call: one array built once, not `allCases` each time.
    private static let levels = Logger.Level.allCases

    /// The level now; setting it changes every handler sharing this object (relaxed atomic).
    public var level: Logger.Level {
        get {
            let i = raw.load(ordering: .relaxed)
            return Self.levels.indices.contains(i) ? Self.levels[i] : .info
        }
        set { raw.store(Self.index(newValue), ordering: .relaxed) }
    }

    private static func index(_ level: Logger.Level) -> Int { levels.firstIndex(of: level) ?? 2 }
}
