/// The handshake budget: at most `handshakeStepsPerTurn` server-side TLS handshake steps run
/// in one turn of the loop.
///
/// Why: answering a ClientHello signs with the certificate's key (RSA-2048 about 0.56 ms,
/// ECDSA P-256 about 0.28 ms) and a replayed 517-octet ClientHello costs the client nothing.
/// Unbounded, one epoll batch of up to `maxEventsPerWait` such connections is a turn of
/// ~140 ms during which no logged-in session is served (measured: 1,015 handshakes/s pushed
/// every session's NOOP to 77 ms median). Bounded, a turn holds at most a few milliseconds
/// of handshake work and every other ready connection is served in the same turn; the
/// handshakes left over wait off epoll (their interest is removed, so level-triggered
/// readiness does not report them again at every wait) and are served first at the next
/// turns, in arrival order, those that already ran a step ahead of those waiting for their
/// first: a flood of ClientHellos queues a real client once (for its ClientHello), not again
/// for its Finished. Every step counts against the budget: in TLS 1.2 with RSA key exchange
/// the second step (decrypting the client's key) is the expensive one. The throughput of handshakes is unchanged when nothing else is
/// ready: the loop then simply runs short turns back to back. A handshake that waits too
/// long still ends at the owner's handshake timeout (pop3d: `tls_handshake_timeout`).
extension EventLoop {
    /// Default of `handshakeStepsPerTurn`: 4 steps are about 2 ms of RSA-2048 work (1 ms with
    /// ECDSA P-256). Measured under a flood of replayed ClientHellos on a loaded 2-core
    /// machine (release build, NOOP p50/p99 of a logged-in session): 1 step 8/68 ms, 2 steps
    /// 12/79 ms, 8 steps 14/127 ms, 32 steps 73/164 ms, unbounded 82-125/166-252 ms; the rest
    /// of the tail is accepting and closing the flood's connections.
    public static let defaultHandshakeStepsPerTurn = 4

    var hasDeferredHandshakes: Bool { !laterSteps.isEmpty || !firstSteps.isEmpty }

    /// Handshake steps waiting for a turn (for tests and metrics).
    public var deferredHandshakeCount: Int { laterSteps.count + firstSteps.count }

    /// Called at the start of every turn.
    func refillHandshakeBudget() {
        handshakeStepsLeft = max(1, handshakeStepsPerTurn)
    }

    /// True when `connection` may run a handshake step now (one step of this turn's budget is
    /// taken); otherwise it is queued behind the ones of its kind queued earlier (a later step
    /// ahead of every first step), and false is returned.
    func admitHandshakeStep(_ connection: Connection) -> Bool {
        if connection.isHandshakeDeferred { return false }
        let queuedAhead = connection.handshakeStarted ? !laterSteps.isEmpty : hasDeferredHandshakes
        if !queuedAhead && handshakeStepsLeft > 0 {
            handshakeStepsLeft -= 1
            connection.handshakeStarted = true
            return true
        }
        connection.isHandshakeDeferred = true
        if connection.handshakeStarted {
            laterSteps.push(connection)
        } else {
            firstSteps.push(connection)
        }
        connection.updateInterest()
        return false
    }

    /// From `runBeforeWait`: the oldest deferred handshakes get the budget left in this turn,
    /// later steps first.
    func serveDeferredHandshakes() {
        while handshakeStepsLeft > 0, let connection = laterSteps.pop() ?? firstSteps.pop() {
            connection.isHandshakeDeferred = false
            guard !connection.isClosed else { continue }  // closed while waiting: no step
            handshakeStepsLeft -= 1
            connection.handshakeStarted = true
            connection.runDeferredHandshakeStep()
        }
    }
}

/// A queue of connections (array with a moving head, compacted as it drains).
struct ConnectionFIFO {
    private var items: [Connection] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }

    mutating func push(_ connection: Connection) {
        items.append(connection)
    }

    mutating func pop() -> Connection? {
        guard head < items.count else { return nil }
        let connection = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: items.count <= 1024)
            head = 0
        } else if head >= 1024 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return connection
    }
}

extension Connection {
    /// Asks the loop's budget before a transport read that may run a handshake step.
    func admitHandshakeStep() -> Bool {
        guard transport.handshakeStepPending else { return true }
        return loop.admitHandshakeStep(self)
    }

    /// The loop granted a deferred step: epoll interest comes back, the step runs (a read:
    /// every server-side step answers the client's bytes), and output queued meanwhile (the
    /// implicit-TLS greeting) is flushed once the handshake allows it.
    func runDeferredHandshakeStep() {
        updateInterest()
        guard case .open = state, readingAllowed else { return }
        readFromTransport()
        if !isClosed && !output.isEmpty { enqueueFlush() }
    }
}
