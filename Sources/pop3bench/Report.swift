import Histogram

/// The end-of-run summary, as text or as one JSON object.
///
/// JSON fields (stable, for scripts):
/// - `scenario`, `concurrency`, `elapsed_s`: what ran and for how long (seconds, wall clock).
/// - `sessions`: `{started, ok, failed}`; a session with any counted error is failed.
/// - `commands`: successful replies by kind (`connect` = TCP connect + greeting, with implicit
///   TLS also the handshake; `tls` = handshakes completed, timed from the TCP connect for
///   implicit TLS and from the STLS command for STLS; `login`, `stat`, `list`, `uidl`, `retr`,
///   `dele`, `noop`, `quit`) and `total`.
/// - `retr_octets`: RETR body octets as LIST counts them.
/// - `throughput`: `{sessions_per_s, commands_per_s, retr_mb_per_s}` (MB = 10^6 octets).
/// - `errors`: counts by kind (`connect`, `greeting`, `tls`, `auth`, `protocol`, `size_mismatch`,
///   `uidl_mismatch`, `timeout`, `closed`) and `total`.
/// - `latency_us`: per command kind and `session` (a whole successful session):
///   `{count, p50, p90, p99, p99_9, max}` in microseconds (HdrHistogram, 3 digits).
/// - `first_error`: text of the first error seen, or null.
struct Report {
    let config: BenchConfig
    let stats: Stats
    let elapsedNanoseconds: UInt64
    let firstError: String?
    let interrupted: Bool

    var seconds: Double { max(Double(elapsedNanoseconds) / 1e9, 1e-9) }

    private func percentiles(_ h: Histogram<UInt64>) -> [(String, UInt64)] {
        guard h.totalCount > 0 else { return [("count", 0)] }
        return [("count", h.totalCount), ("p50", h.valueAtPercentile(50)), ("p90", h.valueAtPercentile(90)),
                ("p99", h.valueAtPercentile(99)), ("p99_9", h.valueAtPercentile(99.9)), ("max", h.max)]
    }

    private var latencies: [(String, Histogram<UInt64>)] {
        CommandKind.allCases.map { ($0.name, stats.latency[$0.rawValue]) } + [("session", stats.sessionLatency)]
    }

    func json() -> String {
        func object(_ pairs: [(String, String)]) -> String {
            "{" + pairs.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
        func number(_ d: Double) -> String { String((d * 1000).rounded() / 1000) }
        let commands = CommandKind.allCases.map { ($0.name, String(stats.commands[$0.rawValue])) }
            + [("total", String(stats.totalCommands))]
        let errors = ErrorKind.allCases.map { ($0.name, String(stats.errors[$0.rawValue])) }
            + [("total", String(stats.totalErrors))]
        let latency = latencies.map { ($0.0, object(percentiles($0.1).map { ($0.0, String($0.1)) })) }
        var firstErrorJSON = "null"
        if let firstError {
            firstErrorJSON = "\"" + firstError.unicodeScalars.map { scalar -> String in
                switch scalar {
                case "\"": return "\\\""
                case "\\": return "\\\\"
                default: return scalar.value < 0x20 ? " " : String(scalar)
                }
            }.joined() + "\""
        }
        return object([
            ("scenario", "\"\(config.scenario.rawValue)\""),
            ("concurrency", String(config.concurrency)),
            ("elapsed_s", number(seconds)),
            ("interrupted", String(interrupted)),
            ("sessions", object([("started", String(stats.sessionsStarted)), ("ok", String(stats.sessionsOK)),
                                 ("failed", String(stats.sessionsFailed))])),
            ("commands", object(commands)),
            ("retr_octets", String(stats.retrOctets)),
            ("throughput", object([
                ("sessions_per_s", number(Double(stats.sessionsOK) / seconds)),
                ("commands_per_s", number(Double(stats.totalCommands) / seconds)),
                ("retr_mb_per_s", number(Double(stats.retrOctets) / 1e6 / seconds)),
            ])),
            ("errors", object(errors)),
            ("latency_us", object(latency)),
            ("first_error", firstErrorJSON),
        ])
    }

    func text() -> String {
        func fixed(_ d: Double) -> String { String((d * 10).rounded() / 10) }
        var out = "pop3bench \(config.scenario.rawValue): concurrency \(config.concurrency), \(fixed(seconds)) s"
        if interrupted { out += " (interrupted)" }
        out += "\nsessions: \(stats.sessionsOK) ok, \(stats.sessionsFailed) failed of \(stats.sessionsStarted) started\n"
        out += "throughput: \(fixed(Double(stats.sessionsOK) / seconds)) sessions/s, "
        out += "\(fixed(Double(stats.totalCommands) / seconds)) commands/s, "
        out += "\(fixed(Double(stats.retrOctets) / 1e6 / seconds)) MB/s RETR\n"
        out += "errors: \(stats.totalErrors)"
        let nonzero = ErrorKind.allCases.filter { stats.errors[$0.rawValue] > 0 }
        if !nonzero.isEmpty {
            out += " (" + nonzero.map { "\($0.name) \(stats.errors[$0.rawValue])" }.joined(separator: ", ") + ")"
        }
        if let firstError { out += "\nfirst error: \(firstError)" }
        out += "\nlatency (µs)      count       p50       p90       p99     p99.9       max\n"
        for (name, h) in latencies where h.totalCount > 0 {
            let values = [h.totalCount, h.valueAtPercentile(50), h.valueAtPercentile(90), h.valueAtPercentile(99),
                          h.valueAtPercentile(99.9), h.max]
            out += pad(name, 12, left: true) + values.map { pad(String($0), 10, left: false) }.joined() + "\n"
        }
        return out
    }

    private func pad(_ s: String, _ width: Int, left: Bool) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? s + fill : fill + s
    }
}
