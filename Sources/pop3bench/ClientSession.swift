import POP3
import Reactor

/// One client slot: runs sessions one after another on fresh connections. Its buffers
/// (LIST sizes, RETR plan, NOOP send times) are reused from session to session.
final class ClientSession: ConnectionDelegate {
    enum Step {
        case idle, handshake, greeting, stls, user, pass, apop, plain, stat, list, listOne, uidl, retr, dele, noop,
             hold, quit, done
    }

    unowned let bench: Bench
    let slot: Int
    var config: BenchConfig { bench.config }
    var stats: Stats { bench.stats }

    var connection: Connection?
    var parser = ReplyParser()
    /// Where `command(_:_:multiLine:next:)` formats `KEYWORD n CRLF` before it is queued.
    var commandBuffer = ByteArraySink()
    var step = Step.idle
    var credential = 0
    var sessionsRun = 0
    var failed = false
    var sessionStart: UInt64 = 0
    var commandStart: UInt64 = 0
    /// When TLS setup began: the connect (implicit TLS) or the STLS command.
    var tlsStart: UInt64 = 0
    /// The greeting's APOP timestamp, angle brackets included (kept across STLS: RFC 2595 §4
    /// leaves the plaintext greeting the one APOP answers).
    var apopTimestamp: [UInt8] = []
    /// Set while handling input: the connection is closed once `withInput` returned.
    var closeAfterInput = false

    var messageCount = 0
    var listSizes: [Int] = []
    var retrPlan: [Int] = []
    var retrIndex = 0
    var commandsLeftToSend = 0
    var repliesLeft = 0
    var sendTimes: [UInt64]
    var sendHead = 0
    var sendTail = 0
    var holdTimer: TimerID?

    init(bench: Bench, slot: Int) {
        self.bench = bench
        self.slot = slot
        sendTimes = [UInt64](repeating: 0, count: max(1, bench.config.depth))
    }

    // MARK: lifecycle

    func start(sessionNumber: Int) {
        failed = false
        closeAfterInput = false
        messageCount = 0
        retrIndex = 0
        // A slot's k-th session logs in as user (slot + k * concurrency) mod users: when the user
        // count is a multiple of the concurrency, no two live sessions share a maildrop (whose
        // lock would answer -ERR [IN-USE]).
        credential = config.credentials.isEmpty ? 0 : (slot + sessionsRun * config.concurrency) % config.credentials.count
        sessionsRun += 1
        sessionStart = monotonicNanoseconds()
        commandStart = sessionStart
        stats.sessionsStarted += 1
        let source = config.sources[slot % config.sources.count]
        do {
            let c = try Connection.connect(to: config.target, from: source, loop: bench.loop)
            c.delegate = self
            c.maxInputBytes = max(ReplyParser.defaultMaxLineLength + 1024, Bench.readBufferBytes)
            c.idleTimeout = config.replyTimeoutNanoseconds
            connection = c
            stats.connectionsOpen += 1
            step = .greeting
            parser.expect(multiLine: false)
            // The PROXY header goes first: queued before any command and before the TLS transport
            // is installed (which waits for the queue to drain), so it leaves as plaintext and
            // the ClientHello follows it.
            if let proxy = config.proxy { c.write(proxy.header(sessionNumber: sessionNumber, target: config.target)) }
            if config.transport == .tls {
                tlsStart = sessionStart
                if !startTLS(on: c) { c.close(flushFirst: false) }
            }
        } catch {
            stats.count(.connect)
            bench.reportFirstError("connect: \(error)")
            step = .done
            stats.recordSession(ok: false, nanoseconds: 0)
            bench.sessionEnded(self)
        }
    }

    /// Ends the session now (hard deadline or interrupt); counted as a timeout.
    func abort() {
        guard let connection, step != .done else { return }
        stats.count(.timeout)
        failed = true
        step = .done
        connection.close(flushFirst: false)
    }

    func connectionWillTimeOut(_ connection: Connection) {}

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        stats.connectionsOpen -= 1
        self.connection = nil
        if let holdTimer { bench.loop.cancelTimer(holdTimer) }
        holdTimer = nil
        if step != .done {
            failed = true
            let tlsFailure = (connection.transport as? TLSTransport)?.failureReason
            switch reason {
            case .idleTimeout:
                stats.count(.timeout)
            case .local:
                break  // already counted by whoever closed it
            case _ where step == .handshake:
                stats.count(.tls)
            case .error, .reset:
                stats.count(step == .greeting ? .connect : .closed)
            default:
                stats.count(step == .greeting ? .greeting : .closed)
            }
            bench.reportFirstError("connection closed during \(step) (\(tlsFailure.map { "TLS \($0)" } ?? "\(reason)"))")
            step = .done
        }
        stats.recordSession(ok: !failed, nanoseconds: monotonicNanoseconds() &- sessionStart)
        bench.sessionEnded(self)
    }

    // MARK: input

    func connectionReadable(_ connection: Connection) {
        connection.withInput { bytes in
            var used = 0
            // After STLS's "+OK" nothing more is read in plaintext (the connection drops it).
            while !closeAfterInput && step != .handshake {
                let input = UnsafeRawBufferPointer(rebasing: bytes[used...])
                let (event, consumed) = parser.next(input)
                if case .needMore = event { break }
                used += consumed
                handle(event, input)
            }
            return used
        }
        if closeAfterInput { connection.close(flushFirst: false) }
    }

    // MARK: TLS

    /// Installs a client TLS transport; its handshake starts at once (implicit TLS: as soon as
    /// the TCP connect completes). False after counting a TLS error: the caller closes.
    func startTLS(on connection: Connection) -> Bool {
        guard let context = bench.tlsContext else {
            fail(.tls, "TLS transport without a TLS context")
            step = .done
            return false
        }
        do {
            let transport = try TLSTransport(client: context, fd: connection.fd)
            transport.onHandshakeComplete = { [unowned self] _ in self.handshakeDone() }
            connection.switchTransport(to: transport)
            step = .handshake
            return true
        } catch {
            fail(.tls, "cannot create a TLS session: \(error)")
            step = .done
            return false
        }
    }

    /// Runs inside the transport's read, before any decrypted byte is delivered.
    private func handshakeDone() {
        guard step == .handshake else { return }
        let now = monotonicNanoseconds()
        stats.record(.tls, nanoseconds: now &- tlsStart)
        if config.transport == .tls {
            step = .greeting  // the connect latency runs on until the greeting
        } else {
            commandStart = now
            afterGreeting()
        }
    }

    /// Counts an error, marks the session failed and says goodbye politely.
    func fail(_ kind: ErrorKind, _ what: @autoclosure () -> String) {
        stats.count(kind)
        failed = true
        bench.reportFirstError(what())
    }

    /// Gives up on a connection whose byte stream can no longer be trusted.
    func failAndClose(_ kind: ErrorKind, _ what: @autoclosure () -> String) {
        fail(kind, what())
        step = .done
        closeAfterInput = true
    }
}
