import Auth
import Glibc
import Logging
import Maildrop
import POP3
import Reactor

/// Writes session replies straight into the connection's output queue.
///
/// `unowned(unsafe)`: a sink lives only on the stack of a method of the POP3Connection that
/// holds the connection strongly; a checked `unowned` costs a refcount round trip per write,
/// which showed as ~10% of CPU in the session benchmark.
struct ConnectionSink: ReplySink {
    unowned(unsafe) let connection: Connection
    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) { connection.write(bytes) }
}

/// Encodes straight into the connection's output queue: the encoder's many small writes (a
/// line, then CRLF, per line) become copies into the queue's free chunk space, with no staging
/// buffer and no per-write call into the connection. `finish()` must run before anything else
/// is written to the connection.
struct OutputSink: ReplySink {
    unowned(unsafe) let connection: Connection
    var space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    var used = 0

    init(connection: Connection) {
        self.connection = connection
    }

    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard var src = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            if used == space.count {
                finish()
                space = connection.reserveOutput()
                if space.count == 0 { return }  // closing: output is dropped anyway
            }
            guard let dst = space.baseAddress else { return }
            let n = min(left, space.count - used)
            (dst + used).copyMemory(from: src, byteCount: n)
            used += n
            src += n
            left -= n
        }
    }

    /// Queues what was written so far.
    mutating func finish() {
        if used > 0 { connection.commitOutput(used) }
        used = 0
        space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }
}

/// A maildrop opened on a storage worker and handed to the loop. Unchecked Sendable: the worker
/// creates it and never touches it again; from then on only the loop thread uses it.
struct OpenedMaildrop: @unchecked Sendable {
    let result: Result<Maildrop, MaildropError>

    init(path: String, allowRootSymlink: Bool, cancellation: CancellationFlag) {
        do {
            result = .success(try Maildrop.open(
                path: path, allowRootSymlink: allowRootSymlink, cancellation: cancellation))
        } catch {
            result = .failure(error)
        }
    }
}

/// One client: runs the pure `Session` against the connection, the Auth worker pool and the
/// Maildrop, and performs the session's actions (DESIGN "How a byte travels").
final class POP3Connection: ConnectionDelegate {
    enum Phase {
        /// Between commands: input is parsed.
        case reading
        /// Credentials are being verified, a failure penalty runs, or a SASL step is out.
        case waiting
        /// A LIST/UIDL listing is being produced under backpressure.
        case producing
        /// A RETR/TOP is being streamed under backpressure.
        case streaming
        case closing
        case closed
    }

    unowned let service: POP3Service
    let connection: Connection
    let address: IPAddress?
    var session: Session
    var parser = LineParser()
    var phase: Phase = .reading
    var maildrop: Maildrop?
    var reader: MessageReader?
    var encoder = MessageEncoder(bodyLines: nil)
    var scram: ScramServer?
    var scramEntry: UserEntry?
    /// A maildrop open running on a storage worker for this session (POP3Connection+StorageJob).
    var storageJob: StorageJob?
    var penaltyTimer: TimerID?
    /// The hash queued or running for this session's login (POP3Connection+AuthQueue.swift).
    var authJob: WorkerPool.JobID?
    /// `tls_handshake_timeout` for this session's handshake (POP3Service+TLS.swift).
    var handshakeTimer: TimerID?
    var loggedIn = false
    /// pump() is on the stack.
    var pumping = false
    var endReason = "client quit"
    let startedAt: UInt64
    /// Place in the service's pre-login queue (POP3Service+PreLogin.swift).
    var preLoginLinks = PreLoginLinks()

    init(service: POP3Service, connection: Connection, address: IPAddress?, implicitTLS: Bool) {
        self.service = service
        self.connection = connection
        self.address = address
        self.startedAt = service.loop.now
        let local = SocketAddress.local(of: connection.fd).flatMap { IPAddress(bytes: $0.addressBytes) }
        session = Session(config: service.makeSessionConfig(
            address: address, local: local, tlsActive: implicitTLS,
            stlsAvailable: !implicitTLS && service.tls != nil))
        connection.outputHighWater = service.config.maxOutputBytes
        connection.outputLowWater = max(4096, service.config.maxOutputBytes / 4)
        // Before login a client that does not read its replies is closed at a small bound
        // (Dovecot: 4 KiB); after login it is throttled at max_output_bytes (maildropOpened).
        connection.maxBlockedOutputBytes = service.config.maxUnauthenticatedOutputBytes
        connection.idleTimeout = UInt64(service.config.idleTimeoutSeconds) * 1_000_000_000
        connection.delegate = self
    }

    func start() {
        var sink = ConnectionSink(connection: connection)
        session.start(out: &sink)
        service.logger.debug("connected", metadata: ["connection.id": "\(connection.id)", "client": "\(connection.peer)"])
    }

    // MARK: input

    func connectionReadable(_ connection: Connection) {
        pump()
    }

    /// Parses and runs complete commands until input runs out, an action makes the session
    /// wait (authentication, a producer, a stream), or this connection had its turn.
    func pump() {
        pumping = true
        defer { pumping = false }
        var handled = 0
        while phase == .reading && !connection.isClosed {
            if handled == POP3Service.maxCommandsPerTurn {
                connection.redeliverBufferedInput()
                return
            }
            // Output at the high-water mark: the connection shows no more input until it drains
            // (the reactor's output throttle); stop here rather than ask.
            if connection.isOutputThrottled { return }
            parser.maxLineLength = session.maxLineLength
            var action: SessionAction? = nil
            connection.withInput { bytes in
                let (event, consumed) = parser.next(bytes)
                var sink = ConnectionSink(connection: connection)
                switch event {
                case .needMore:
                    break
                case .line(let range):
                    action = session.handleLine(UnsafeRawBufferPointer(rebasing: bytes[range]), out: &sink)
                case .tooLong:
                    action = session.lineTooLong(out: &sink)
                }
                return consumed
            }
            guard let action else { return }
            handled += 1
            perform(action)
            if phase != .reading && phase != .closing && phase != .closed {
                // Mid-command (a stream, a listing, a login): further commands wait in the
                // kernel, not in our bounded input buffer (DESIGN: a producer stops the reading
                // of commands); `resume()` reads again.
                connection.pauseReading()
            }
        }
    }

    func perform(_ action: SessionAction) {
        switch action {
        case .none:
            if service.isDraining { closeIfIdle() }
        case .authenticate(let request):
            authenticate(request)
        case .saslStep(let step):
            saslStep(step)
        case .produce:
            phase = .producing
            produce()
        case .streamMessage(let index, let bodyLines):
            startStream(index: index, bodyLines: bodyLines)
        case .startTLS:
            startTLS()
        case .commitDeletions(let indices):
            commit(indices)
        case .close:
            let c = session.counters
            if c.badCommands >= service.config.maxBadCommands {
                endReason = "too many bad commands"
            } else if c.authFailures >= service.config.maxAuthFailures {
                endReason = "too many failed logins"
            }
            close(reason: endReason)
        }
    }

    /// Back to reading commands after an action completed.
    func resume() {
        guard phase != .closing && phase != .closed else { return }
        phase = .reading
        if service.isDraining { closeIfIdle(); return }
        connection.resumeReading()
        // Called from inside pump() when an action completed at once (a cheap login, a short
        // listing): the running pump goes on; no nested call, so the stack stays flat.
        if !pumping { pump() }
    }

    // MARK: output-driven producers

    func connectionWritable(_ connection: Connection) {
        switch phase {
        case .producing: produce()
        case .streaming: stream()
        default: break
        }
    }

    private func produce() {
        var sink = OutputSink(connection: connection)
        while !connection.isClosed && !connection.isOutputFull {
            let done = session.produceMore(out: &sink, maxBytes: POP3Service.listingChunkBytes)
            sink.finish()
            if done {
                resume()
                return
            }
        }
    }

    private func startStream(index: Int, bodyLines: Int?) {
        guard let maildrop else { return close(reason: "no maildrop for RETR") }
        do {
            reader = try maildrop.openMessage(index)
        } catch {
            // The +OK line is already queued: the only honest way out is to drop the
            // connection (no UPDATE happens, nothing is lost).
            service.logger.error("cannot open message: \(error)", metadata: metadata)
            return close(reason: "message unreadable: \(error)")
        }
        encoder = MessageEncoder(bodyLines: bodyLines)
        phase = .streaming
        stream()
    }

    /// Reads the message in bounded chunks until the output queue reaches its high-water mark,
    /// then waits for `connectionWritable` (below the low-water mark): a slow reader costs a
    /// few chunks of memory whatever the message size.
    private func stream() {
        guard let reader else { return }
        // Flushed after every chunk: the high-water check below must see the bytes, and the
        // next command's reply must not overtake the end of the message.
        var sink = OutputSink(connection: connection)
        let buffer = service.streamBuffer
        while !connection.isClosed && !connection.isOutputFull {
            let n: Int
            do {
                n = try reader.read(into: buffer)
            } catch {
                service.logger.error("message read failed mid-stream: \(error)", metadata: metadata)
                finishStream()
                return close(reason: "message read failed: \(error)")
            }
            if n > 0 {
                encoder.encode(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), out: &sink)
            }
            if n == 0 || encoder.isComplete {
                encoder.finish(out: &sink)
                sink.finish()
                finishStream()
                resume()
                return
            }
            sink.finish()
        }
    }

    private func finishStream() {
        reader?.close()
        reader = nil
    }

    // MARK: authentication

    /// An address with recent failures first waits out its penalty (Dovecot's auth penalty:
    /// before the verification, so waiting attackers hold no hashing worker); then the
    /// credentials are checked, on the loop when a digest suffices, else on the worker pool.
    private func authenticate(_ request: AuthRequest) {
        phase = .waiting
        afterPenalty { $0.verify(request) }
    }

    private func verify(_ request: AuthRequest) {
        let passwd = service.passwd
        switch request {
        case .password(let user, let password):
            guard password.count <= CostLimits.maxPasswordLength else {
                // Refused without hashing: SHA-crypt's cost grows with the length.
                service.logger.notice("password longer than \(CostLimits.maxPasswordLength) octets refused",
                                      metadata: metadata)
                return authFailed(user: user)
            }
            if passwd.verificationIsCheap(user: user) {
                // PLAIN, SSHA and friends cost a digest: a trip through the worker pool (two
                // thread wake-ups, an eventfd round trip) would cost more than the work.
                return credentialsChecked(user: user, entry: passwd.verifyOrDummy(user: user, password: password))
            }
            submitAuthJob({ passwd.verifyOrDummy(user: user, password: password) },
                          isFailure: { $0 == nil }) { connection, entry in
                connection.credentialsChecked(user: user, entry: entry)
            }
        case .apop(let user, let digest, let timestamp):
            // MD5 is cheap: no need for the pool. Unknown user and wrong digest look alike.
            let entry = passwd.lookup(user).flatMap {
                apopDigestMatches(entry: $0, timestamp: timestamp, digestHex: digest) ? $0 : nil
            }
            credentialsChecked(user: user, entry: entry)
        case .cramMD5(let user, let digest, let challenge):
            let entry = passwd.lookup(user).flatMap {
                CramMD5.digestMatches(entry: $0, challenge: Array(challenge.utf8), digestHex: Array(digest.utf8)) ? $0 : nil
            }
            credentialsChecked(user: user, entry: entry)
        }
    }

    /// The verification result is in: open the maildrop, or fail (the failure delays the
    /// address's next attempt, `afterPenalty`).
    func credentialsChecked(user: String, entry: UserEntry?) {
        guard phase == .waiting, !connection.isClosed else { return }
        guard let entry else {
            return authFailed(user: user)
        }
        if let address { service.penalties.recordSuccess(from: address) }
        if service.loginTooSoon(user) {
            return loginFinished(.loginDelay)
        }
        let path: String
        do {
            path = try service.location.path(user: user, home: entry.home)
        } catch {
            service.logger.warning("mail location refused: \(error)", metadata: metadata)
            return loginFinished(.permanentFailure("invalid mailbox name"))
        }
        // A small maildrop whose sizes are known (names, size cache) is listed right here: a
        // directory read and a stat per message. A large one, or one whose messages must be
        // read to count CRLF octets (a first login; seconds for a big Maildir on a cold disk),
        // is opened on the storage workers, so the loop never waits for it.
        let allowRootSymlink = service.config.maildirAllowRootSymlink
        do {
            return maildropOpened(
                .success(try Maildrop.open(path: path, quick: true, allowRootSymlink: allowRootSymlink)), user: user)
        } catch .wouldBlock {
            // fall through to the workers
        } catch {
            return maildropOpened(.failure(error), user: user)
        }
        let job = StorageJob()
        let cancellation = job.cancellation
        let submitted = service.storagePool.submit({
            OpenedMaildrop(path: path, allowRootSymlink: allowRootSymlink, cancellation: cancellation)
        }) { [weak self] opened in
            guard let self, self.phase == .waiting, !self.connection.isClosed else {
                if case .success(let drop) = opened.result { drop.close() }  // client gone: release the lock
                return
            }
            self.endStorageJob(cancel: false)
            self.maildropOpened(opened.result, user: user)
        }
        if case .queued = submitted {
            watchStorageJob(job)
        } else {
            loginFinished(.temporaryFailure("storage service overloaded"))
        }
    }

    private func maildropOpened(_ result: Result<Maildrop, MaildropError>, user: String) {
        switch result {
        case .success(let drop):
            maildrop = drop
            if let why = drop.statistics.cacheDiscarded {
                service.logger.notice("size cache \(drop.path)/pop3d.sizes discarded and rewritten: \(why)", metadata: metadata)
            }
            if let error = drop.statistics.cacheError {
                // Logged once per failed write: the login works, but every login will read
                // the messages again until the cause is fixed.
                service.logger.warning("size cache not written: \(error)", metadata: metadata)
            }
            var sizes: [Int] = []
            var uids: [String] = []
            sizes.reserveCapacity(drop.count)
            uids.reserveCapacity(drop.count)
            for m in drop.messages {
                sizes.append(m.size)
                uids.append(m.uid)
            }
            loggedIn = true
            connection.maxBlockedOutputBytes = .max
            service.sessionLoggedIn(self, user: user)
            service.logger.debug("logged in", metadata: metadata.merging(["messages": "\(drop.count)"]) { $1 })
            loginFinished(.success(MaildropListing(sizes: sizes, uids: uids)))
        case .failure(.inUse):
            loginFinished(.inUse)
        case .failure(.temporary(let why)):
            service.logger.error("maildrop: \(why)", metadata: metadata)
            loginFinished(.temporaryFailure("mailbox temporarily unavailable"))
        case .failure(let error):
            service.logger.error("maildrop: \(error)", metadata: metadata)
            loginFinished(.permanentFailure("mailbox unavailable"))
        }
    }

    /// Records the failure (the address's next attempt waits its penalty, see `afterPenalty`)
    /// and answers at once: the wait comes before the next hash, not after this one.
    func authFailed(user: String) {
        service.logger.notice("login failed", metadata: [
            "connection.id": "\(connection.id)", "client": "\(connection.peer)", "user": "\(user)",
        ])
        if let address { _ = service.penalties.recordFailure(from: address) }
        loginFinished(.authFailed)
    }

    func loginFinished(_ outcome: LoginOutcome) {
        guard !connection.isClosed else { return }
        var sink = ConnectionSink(connection: connection)
        let action = session.loginFinished(outcome, out: &sink)
        phase = .reading
        perform(action)
        if phase == .reading { resume() }
    }

    // MARK: SASL relay (SCRAM-SHA-256)

    private func saslStep(_ step: SASLStep) {
        phase = .waiting
        switch step.index {
        case 0:
            // The start of a SCRAM exchange is the start of an attempt: the penalty comes first.
            let message = step.message
            afterPenalty { connection in
                let passwd = connection.service.passwd
                connection.submitAuthJob({ () -> ScramFirst in
                    var server = ScramServer()
                    let r = server.receiveClientFirst(message, lookup: { passwd.lookup($0) })
                    return ScramFirst(server: server, result: r)
                }) { connection, first in
                    switch first.result {
                    case .success(let serverFirst):
                        connection.scram = first.server
                        connection.challenge(serverFirst)
                    case .failure:
                        connection.authFailed(user: first.server.username ?? "?")
                    }
                }
            }
        case 1:
            // The proof check derives keys with PBKDF2 for PLAIN-stored users and for unknown
            // users (the decoy): thousands of HMACs, so it runs on the pool, under the same
            // per-address quota and cancellation as any hash (issue 10).
            guard let server = scram else { return authFailed(user: "?") }
            let message = step.message
            submitAuthJob({ ScramFinal(result: server.receiveClientFinal(message)) },
                          isFailure: { !$0.verified }) { connection, final in
                switch final.result {
                case .success(let f) where f.verified:
                    connection.scramEntry = f.entry
                    connection.challenge(f.serverFinal)
                case .success, .failure:
                    connection.authFailed(user: server.username ?? "?")
                }
            }
        default:
            let user = scram?.username ?? ""
            scram = nil
            credentialsChecked(user: user, entry: scramEntry)
        }
    }

    private func challenge(_ bytes: [UInt8]) {
        var sink = ConnectionSink(connection: connection)
        session.saslChallenge(bytes, out: &sink)
        resume()
    }

    // MARK: STLS

    private func startTLS() {
        // RFC 2595 §4 / CVE-2011-0411: anything pipelined after STLS was sent in plaintext
        // and must not be read as if it came through TLS.
        connection.withInput { $0.count }
        guard let transport = service.startTLS(on: connection) else { return close(reason: "STLS without TLS") }
        service.watchHandshake(transport, of: self)
        session.tlsStarted()
    }

    // MARK: UPDATE

    /// The UPDATE state (RFC 1939 §6) runs on a storage worker: thousands of unlinks (and a
    /// listing when messages were renamed by another program) never run on the loop. The
    /// connection reads nothing meanwhile; the reply to QUIT comes when the job is done, and
    /// the maildrop lock is held until then. A client that leaves meanwhile loses nothing:
    /// the job finishes its deletions (QUIT was given), releases the lock, and the result is
    /// logged.
    private func commit(_ indices: [Int]) {
        guard let maildrop else {
            var sink = ConnectionSink(connection: connection)
            return perform(session.updateFinished(failed: 0, out: &sink))
        }
        // From here the job owns the maildrop: `connectionClosed` must not release its lock
        // while the deletions run.
        self.maildrop = nil
        phase = .waiting
        let job = UpdatingMaildrop(maildrop: maildrop)
        let logger = service.logger
        let logMetadata = metadata
        let submitted = service.storagePool.submit({ job.commitAndClose(indices) }) { [weak self] result in
            if let error = result.firstError {
                logger.error("UPDATE: \(result.failed) message(s) not removed: \(error)", metadata: logMetadata)
            }
            guard let self, !self.connection.isClosed else {
                logger.info("UPDATE finished after the client left: \(result.deleted) deleted, \(result.failed) not removed",
                            metadata: logMetadata)
                return
            }
            self.updateFinished(failed: result.failed)
        }
        if case .queued = submitted { return }
        // No worker will take it (queue full, shutting down): nothing is removed, and the
        // client is told so (RFC 1939 §6 -ERR); the next session can try again.
        maildrop.close()
        logger.error("UPDATE: storage workers unavailable, \(indices.count) message(s) not removed", metadata: logMetadata)
        updateFinished(failed: indices.count)
    }

    private func updateFinished(failed: Int) {
        phase = .reading
        var sink = ConnectionSink(connection: connection)
        let action = session.updateFinished(failed: failed, out: &sink)
        perform(action)
    }

    // MARK: closing

    func connectionWillTimeOut(_ connection: Connection) {
        var sink = ConnectionSink(connection: connection)
        session.idleTimedOut(out: &sink)
        endReason = "idle timeout"
    }

    /// Drain: a session between commands is told and closed; busy ones come back here
    /// when their command is done.
    func closeIfIdle() {
        guard phase == .reading, !connection.isClosed else { return }
        connection.write("-ERR [SYS/TEMP] Server shutting down\r\n")
        close(reason: "server shutdown")
    }

    func abort(reason: String) {
        endReason = reason
        connection.close(flushFirst: false)
    }

    private func close(reason: String) {
        endReason = reason
        phase = .closing
        connection.close(flushFirst: true)
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        phase = .closed
        endStorageJob(cancel: true)
        if let penaltyTimer { service.loop.cancelTimer(penaltyTimer) }
        penaltyTimer = nil
        cancelAuthJob()
        if let handshakeTimer { service.loop.cancelTimer(handshakeTimer) }
        handshakeTimer = nil
        finishStream()
        // A session that ends any other way than QUIT deletes nothing (RFC 1939 §6).
        maildrop?.close()
        maildrop = nil
        switch reason {
        case .local: break
        // A connection already closing (a login deadline, an eviction, QUIT) keeps its reason.
        case .idleTimeout: if endReason == "client quit" { endReason = "idle timeout" }
        case .peerClosed: if endReason == "client quit" && !session.isClosed { endReason = "client disconnected" }
        case .reset: endReason = "connection reset"
        case .inputLimitExceeded: endReason = "input limit exceeded"
        case .outputLimitExceeded: endReason = "output limit exceeded before login (client does not read)"
        case .error(let e):
            if let tls = connection.transport as? TLSTransport, let why = tls.failureReason {
                endReason = "TLS \(why)"
            } else {
                endReason = "error: \(e)"
            }
        }
        let c = session.counters
        let seconds = Double(service.loop.now &- startedAt) / 1e9
        service.logger.info("session end", metadata: [
            "connection.id": "\(connection.id)",
            "user": "\(session.user ?? "-")",
            "client": "\(connection.peer)",
            "commands": "\(c.commands)",
            "retrieved": "\(c.messagesRetrieved)",
            "bytes": "\(c.octetsRetrieved)",
            "deleted": "\(c.messagesDeleted)",
            "duration": "\(Int(seconds * 1000))ms",
            "reason": "\(endReason)",
        ])
        service.sessionEnded(self, wasLoggedIn: loggedIn)
    }

    var metadata: Logger.Metadata {
        ["connection.id": "\(connection.id)", "client": "\(connection.peer)", "user": "\(session.user ?? "-")"]
    }
}
