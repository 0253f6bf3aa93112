import Glibc
import Logging

/// swift-log to stderr, one line per event. When stderr is the journal (JOURNAL_STREAM set,
/// systemd.exec(5)), each line starts with the syslog priority "<N>" (sd-daemon(3)) so journald
/// keeps the level.
public struct JournalStderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let journal: Bool

    public init(label: String, level: Logger.Level, journal: Bool) {
        self.label = label
        self.logLevel = level
        self.journal = journal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level
        let message = event.message
        var all = metadata
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        var text = journal ? "<\(Self.priority(level))>" : "\(level) "
        text += message.description
        for key in all.keys.sorted() {
            text += " \(key)=\(all[key].map { "\($0)" } ?? "")"
        }
        // Newlines would split one event over several journal entries.
        text = String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
        text += "\n"
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(2, raw.baseAddress.map { $0 + offset }, raw.count - offset)
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
    }

    /// syslog(3) priorities.
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
}

public enum ServerLogging {
    /// Installs the stderr handler for the whole process (call once, first thing in main) and
    /// returns the process logger. Unknown level names fall back to info.
    public static func bootstrap(levelName: String) -> Logger {
        let level = self.level(named: levelName) ?? .info
        let journal = getenv("JOURNAL_STREAM") != nil
        LoggingSystem.bootstrap { label in JournalStderrLogHandler(label: label, level: level, journal: journal) }
        return Logger(label: "pop3d")
    }

    public static func level(named name: String) -> Logger.Level? {
        Logger.Level(rawValue: name.lowercased())
    }
}
