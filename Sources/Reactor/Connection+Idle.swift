extension Connection {
    /// Idle timeout in ns (0 = none). Reset by every read and by output progress, so a slow
    /// RETR download is not cut off. RFC 1939 section 3: at least 10 minutes for POP3.
    ///
    /// Re-arming is a store: one heap entry per connection fires at the old deadline and is
    /// re-pushed at the current one if activity moved it (lazy re-arm).
    public var idleTimeout: UInt64 {
        get { idleTimeoutNanoseconds }
        set {
            idleTimeoutNanoseconds = newValue
            if let idleTimer { loop.cancelTimer(idleTimer) }
            idleTimer = nil
            guard newValue > 0, !isClosed else { return }
            idleDeadline = loop.now &+ newValue
            armIdleTimer(after: newValue)
        }
    }

    func noteActivity() {
        if idleTimeoutNanoseconds > 0 { idleDeadline = loop.now &+ idleTimeoutNanoseconds }
    }

    private func armIdleTimer(after nanoseconds: UInt64) {
        // Strong: the loop's timer table holds the connection until the timer fires or
        // `finalize` cancels it (cancelling drops the closure at once, EventLoop+Timers), so
        // no connection outlives its close through it. A `[weak self]` would give every
        // connection a side table (slower retains and releases for its whole life).
        idleTimer = loop.scheduleTimer(after: nanoseconds) { self.idleTimerFired() }
    }

    private func idleTimerFired() {
        idleTimer = nil
        guard !isClosed, idleTimeoutNanoseconds > 0 else { return }
        if loop.now < idleDeadline {
            armIdleTimer(after: idleDeadline - loop.now)
            return
        }
        // A connection closing after its last reply to a peer that stopped reading ends here too.
        guard case .open = state else {
            finalize(.idleTimeout)
            return
        }
        delegate?.connectionWillTimeOut(self)
        if !isClosed && !output.isEmpty {
            flush()  // one best-effort attempt for the delegate's last line
        }
        finalize(.idleTimeout)
    }
}
