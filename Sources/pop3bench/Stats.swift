import Glibc
import Histogram

/// Command kinds timed separately (latency from the command's send to its complete reply).
enum CommandKind: Int, CaseIterable {
    case connect, tls, login, stat, list, uidl, retr, dele, noop, quit

    var name: String {
        switch self {
        case .connect: "connect"  // TCP connect + greeting (implicit TLS: + handshake)
        case .tls: "tls"          // TLS setup: from connect (implicit) or from STLS until the handshake is done
        case .login: "login"      // USER+PASS, APOP or AUTH PLAIN, until the final +OK
        case .stat: "stat"
        case .list: "list"
        case .uidl: "uidl"
        case .retr: "retr"
        case .dele: "dele"
        case .noop: "noop"
        case .quit: "quit"
        }
    }
}

/// Error kinds; a session with any error is counted failed, never successful.
enum ErrorKind: Int, CaseIterable {
    case connect, greeting, tls, auth, protocolError, sizeMismatch, uidlMismatch, timeout, closed

    var name: String {
        switch self {
        case .connect: "connect"
        case .greeting: "greeting"
        case .tls: "tls"  // STLS refused, handshake failed, or connection lost during it
        case .auth: "auth"
        case .protocolError: "protocol"
        case .sizeMismatch: "size_mismatch"
        case .uidlMismatch: "uidl_mismatch"
        case .timeout: "timeout"
        case .closed: "closed"
        }
    }
}

/// Monotonic clock in ns (vDSO: no syscall), read per reply for latencies.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// All counters of one run. Single-threaded: touched only on the loop thread.
final class Stats {
    /// Latencies are recorded in µs up to one hour, 3 significant digits (HdrHistogram).
    static let highestTrackableMicroseconds: UInt64 = 3_600_000_000

    var commands = [Int](repeating: 0, count: CommandKind.allCases.count)
    var errors = [Int](repeating: 0, count: ErrorKind.allCases.count)
    var latency: [Histogram<UInt64>]
    var sessionLatency: Histogram<UInt64>
    var sessionsStarted = 0
    var sessionsOK = 0
    var sessionsFailed = 0
    var connectionsOpen = 0
    var retrOctets = 0

    init() {
        let make = { Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: Stats.highestTrackableMicroseconds,
                                       numberOfSignificantValueDigits: .three) }
        latency = CommandKind.allCases.map { _ in make() }
        sessionLatency = make()
    }

    var totalCommands: Int { commands.reduce(0, +) }
    var totalErrors: Int { errors.reduce(0, +) }

    @inline(__always)
    func record(_ kind: CommandKind, nanoseconds: UInt64) {
        commands[kind.rawValue] += 1
        _ = latency[kind.rawValue].record(max(1, min(nanoseconds / 1000, Stats.highestTrackableMicroseconds)))
    }

    func count(_ error: ErrorKind) {
        errors[error.rawValue] += 1
    }

    func recordSession(ok: Bool, nanoseconds: UInt64) {
        if ok {
            sessionsOK += 1
            _ = sessionLatency.record(max(1, min(nanoseconds / 1000, Stats.highestTrackableMicroseconds)))
        } else {
            sessionsFailed += 1
        }
    }
}
