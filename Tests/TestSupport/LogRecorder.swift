import Glibc
import Logging
import Synchronization

/// Log lines of a test, kept for assertions (and echoed to stderr with POP3D_TEST_LOG=1).
/// Each line is `level message key=value...`, the keys sorted, so tests match on text.
public final class LogRecorder: Sendable {
    /// One log call: its level, its message alone, and the whole line.
    public struct Record: Sendable {
        public let level: Logger.Level
        public let message: String
        public let line: String
    }

    let records = Mutex<[Record]>([])
    let echo = getenv("POP3D_TEST_LOG") != nil

    public init() {}

    /// Records a line the test itself writes (a harness's own errors), at level error.
    public func append(_ line: String) {
        append(Record(level: .error, message: line, line: line))
    }

    func append(_ record: Record) {
        records.withLock { $0.append(record) }
        if echo {
            var bytes = Array((record.line + "\n").utf8)
            bytes.withUnsafeMutableBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
        }
    }

    /// Every line so far.
    public var all: [String] { records.withLock { $0.map(\.line) } }

    /// True when a line so far contains `text`.
    public func contains(_ text: String) -> Bool { records.withLock { $0.contains { $0.line.contains(text) } } }

    /// How many lines so far contain `text`.
    public func count(_ text: String) -> Int { records.withLock { $0.filter { $0.line.contains(text) }.count } }

    /// The messages of the warnings so far.
    public var warnings: [String] { records.withLock { $0.filter { $0.level == .warning }.map(\.message) } }

    /// A logger whose every line at `level` or above is recorded here.
    public func logger(label: String = "test", level: Logger.Level = .debug) -> Logger {
        var logger = Logger(label: label) { _ in RecordingLogHandler(recorder: self) }
        logger.logLevel = level
        return logger
    }
}

/// A `LogHandler` writing into a `LogRecorder`: the logger's metadata merged with the call's.
public struct RecordingLogHandler: LogHandler {
    public var logLevel: Logger.Level = .debug
    public var metadata: Logger.Metadata = [:]
    let recorder: LogRecorder

    public init(recorder: LogRecorder) { self.recorder = recorder }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "\(event.level) \(event.message)"
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        for key in all.keys.sorted() {
            if let value = all[key] { line += " \(key)=\(value)" }
        }
        recorder.append(LogRecorder.Record(level: event.level, message: "\(event.message)", line: line))
    }
}
