import CShim
import Logging

/// How long the loop's turns take: one turn runs from the return of epoll_wait to the next
/// call of epoll_wait (handlers, expired timers, deferred handshakes, queued reads, hooks,
/// flushes), the wait itself excluded. Every session waits for the current turn, so the
/// longest turn is the worst extra latency any client saw. Readable by the glue (metrics).
public struct LoopTurnStats: Sendable, Equatable {
    /// Turns completed.
    public var turns: UInt64 = 0
    /// Duration of the last completed turn, ns.
    public var lastNanoseconds: UInt64 = 0
    /// Longest turn since start or since `EventLoop.resetMaxTurn()`, ns.
    public var maxNanoseconds: UInt64 = 0
    /// Turns longer than `EventLoop.loopLagWarningNanoseconds`, logged or not.
    public var slowTurns: UInt64 = 0
}

/// What the current turn did, for the warning: filled as the turn runs.
struct TurnProbe {
    var started: UInt64 = 0
    var active = false
    var events = 0
    var eventsNanoseconds: UInt64 = 0
    var timersNanoseconds: UInt64 = 0
    var beforeWaitNanoseconds: UInt64 = 0
    var slowestHandlerNanoseconds: UInt64 = 0
    /// Kept only for the description in a warning; dropped at the next turn.
    var slowestHandler: Selectable?
    /// Warnings not logged because of the rate limit, since the last one logged.
    var suppressed: UInt64 = 0
    var lastWarning: UInt64 = 0
    var warnedOnce = false

    mutating func noteSlowest(_ handler: Selectable, nanoseconds: UInt64) {
        slowestHandlerNanoseconds = nanoseconds
        slowestHandler = handler
    }
}

extension EventLoop {
    /// The value pop3d gives `loopLagWarningNanoseconds` by default (config `loop_lag_warning`):
    /// 50 ms, a delay a person notices and ten times a busy but healthy turn.
    public static let recommendedLoopLagWarning: UInt64 = 50_000_000
    /// At most one lag warning per interval (10 s); the next one counts those not logged, so a
    /// slow machine does not flood the log.
    public static let loopLagWarningInterval: UInt64 = 10_000_000_000

    /// Starts the max over again (a metrics scrape reads `turnStats.maxNanoseconds`, then resets).
    public func resetMaxTurn() {
        turnStats.maxNanoseconds = 0
    }

    /// Right after epoll_wait returned (`now` is fresh).
    func beginTurn(events: Int) {
        turn.started = now
        turn.active = true
        turn.events = events
        turn.eventsNanoseconds = 0
        turn.timersNanoseconds = 0
        turn.beforeWaitNanoseconds = 0
        turn.slowestHandlerNanoseconds = 0
        turn.slowestHandler = nil
        refillHandshakeBudget()
    }

    /// Right before epoll_wait.
    func endTurn() {
        guard turn.active else { return }
        turn.active = false
        let end = cshim_monotonic_ns()
        let took = end &- turn.started
        turnStats.turns &+= 1
        turnStats.lastNanoseconds = took
        if took > turnStats.maxNanoseconds { turnStats.maxNanoseconds = took }
        turnObserver?(took)
        if loopLagWarningNanoseconds > 0, took > loopLagWarningNanoseconds {
            turnStats.slowTurns &+= 1
            if !turn.warnedOnce || end &- turn.lastWarning >= Self.loopLagWarningInterval {
                warnSlowTurn(took)
                turn.warnedOnce = true
                turn.lastWarning = end
                turn.suppressed = 0
            } else {
                turn.suppressed &+= 1
            }
        }
        turn.slowestHandler = nil
    }

    private func warnSlowTurn(_ took: UInt64) {
        func ms(_ ns: UInt64) -> String {
            let tenths = (ns + 50_000) / 100_000
            return "\(tenths / 10).\(tenths % 10) ms"
        }
        var cause = "\(turn.events) event(s) \(ms(turn.eventsNanoseconds))"
        if let slowest = turn.slowestHandler {
            cause += ", slowest \(slowest.lagDescription) \(ms(turn.slowestHandlerNanoseconds))"
        }
        cause += "; timers \(ms(turn.timersNanoseconds)); queued work and flushes \(ms(turn.beforeWaitNanoseconds))"
        var metadata: Logger.Metadata = [
            "turn": "\(ms(took))",
            "limit": "\(ms(loopLagWarningNanoseconds))",
            "cause": "\(cause)",
        ]
        if turn.suppressed > 0 { metadata["not_logged_since_last"] = "\(turn.suppressed)" }
        logger.warning("event loop turn took \(ms(took)), over loop_lag_warning: \(cause)", metadata: metadata)
    }
}

extension Selectable {
    /// Names the handler in a lag warning.
    var lagDescription: String { "\(type(of: self))" }
}
