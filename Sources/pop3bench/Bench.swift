import Glibc
import Reactor

/// Drives the run on one EventLoop: starts sessions in slots (respecting the ramp), prints
/// progress, and stops when the count is done, the duration is over, or the hard deadline hits.
final class Bench {
    /// Ramp and restart tick: slots waiting for a ramp token are started at this period.
    static let tickNanoseconds: UInt64 = 10_000_000

    let config: BenchConfig
    let loop: EventLoop
    let stats = Stats()
    var slots: [ClientSession] = []
    var waiting: [ClientSession] = []
    var sessionsStartedTotal = 0
    var startTime: UInt64 = 0
    var endTime: UInt64 = 0
    var rampTokens = 0.0
    var lastRefill: UInt64 = 0
    var hardStopped = false
    var interrupted = false
    var firstError: String?
    var progress: Progress?
    /// One client TLS context for the whole run, shared by every connection (nil: plain).
    let tlsContext: TLSClientContext?

    /// Largest single read: big enough that a RETR of megabytes costs few syscalls, so the
    /// generator is not the bottleneck of a retr-big run.
    static let readBufferBytes = 256 * 1024

    init(config: BenchConfig) throws {
        self.config = config
        loop = try EventLoop(readBufferBytes: Bench.readBufferBytes)
        // Test servers use self-signed certificates: no verification, and no SNI (the target is
        // an IP address, which SNI may not carry, RFC 6066 §3).
        tlsContext = config.transport == .plain ? nil : try TLSClientContext(alpn: ["pop3"])
    }

    var active: Int { stats.connectionsOpen }

    /// May another session start?
    var wantsMoreSessions: Bool {
        if hardStopped || interrupted { return false }
        if let count = config.count, sessionsStartedTotal >= count { return false }
        if config.duration != nil, monotonicNanoseconds() >= endTime { return false }
        return true
    }

    func run() throws -> UInt64 {
        startTime = monotonicNanoseconds()
        lastRefill = startTime
        endTime = startTime &+ UInt64((config.duration ?? 0) * 1e9)
        for slot in 0..<config.concurrency { slots.append(ClientSession(bench: self, slot: slot)) }
        waiting = slots.reversed()
        if config.progress { progress = Progress(bench: self) }
        try loop.onSignals([SIGINT, SIGTERM]) { [unowned self] _ in
            self.interrupted = true
            self.closeAll()
        }
        _ = loop.scheduleTimer(after: config.hardDeadlineNanoseconds) { [unowned self] in
            self.hardStopped = true
            self.reportFirstError("hard deadline reached")
            self.closeAll()
        }
        scheduleTick()
        loop.addBeforeWaitHook { [unowned self] in self.startWaiting() }
        startWaiting()
        if !checkFinished() { try loop.run() }
        progress?.finish()
        return monotonicNanoseconds() &- startTime
    }

    private func scheduleTick() {
        _ = loop.scheduleTimer(after: Bench.tickNanoseconds) { [unowned self] in
            self.startWaiting()
            if !self.checkFinished() { self.scheduleTick() }
        }
    }

    /// Starts waiting slots: all at once, or as many as the ramp's token bucket allows.
    func startWaiting() {
        // One pass over the slots waiting now: a slot whose connect fails at once comes back
        // to `waiting` and must not make this loop spin.
        var budget = waiting.count
        while budget > 0 && !waiting.isEmpty && wantsMoreSessions {
            budget -= 1
            if let ramp = config.ramp {
                let now = monotonicNanoseconds()
                // Burst at most one tick's worth so a pause does not turn into a stampede.
                rampTokens = min(rampTokens + Double(now &- lastRefill) * ramp / 1e9, max(1, ramp / 100))
                lastRefill = now
                guard rampTokens >= 1 else { return }
                rampTokens -= 1
            }
            let session = waiting.removeLast()
            let number = sessionsStartedTotal
            sessionsStartedTotal += 1
            session.start(sessionNumber: number)
        }
    }

    /// A session ended (its connection is closed): the slot waits for its next turn.
    func sessionEnded(_ session: ClientSession) {
        waiting.append(session)
        _ = checkFinished()
    }

    @discardableResult
    func checkFinished() -> Bool {
        guard !wantsMoreSessions, active == 0 else { return false }
        loop.stop()
        return true
    }

    func closeAll() {
        for slot in slots { slot.abort() }
        _ = checkFinished()
    }

    func reportFirstError(_ text: @autoclosure () -> String) {
        if firstError == nil { firstError = text() }
    }
}
