import Auth
import Logging
import Maildrop
import POP3
import Reactor

// Where each concern of a client connection lives (the split of Dovecot's pop3-client.c
// from pop3-commands.c). Each file owns the state it writes.
//
//   POP3Connection.swift            the class, its stored state, the phase state machine,
//                                   init/start, the input pump, action dispatch, resume
//   POP3Connection+Login.swift      credentials checked, maildrop opened, login outcome,
//                                   the SASL (SCRAM-SHA-256) relay
//   POP3Connection+AuthQueue.swift  the failure penalty and the hashing pool's per-address
//                                   quota and cancellation
//   POP3Connection+StorageJob.swift a maildrop open on the storage workers, watched
//   POP3Connection+Messages.swift   LIST/UIDL listings and RETR/TOP streaming (open before +OK)
//   POP3Connection+Update.swift     the UPDATE state on a storage worker
//   POP3Connection+TLS.swift        STLS and the handshake deadline
//   POP3Connection+Closing.swift    EndReason, idle timeout, drain, abort/close, the release of
//                                   what the phase holds, the session summary line
//   ConnectionSinks.swift           the ReplySinks writing into the output queue
//   POP3Service+PreLogin.swift      login_timeout and max_unauthenticated eviction
//
// `Session` (POP3 module) is the authority on the protocol state (AUTHORIZATION,
// TRANSACTION, UPDATE); `Phase` says only what the glue is waiting for, and carries the
// resources that exist only while it waits, so none can outlive its phase.

/// One client: runs the pure `Session` against the connection, the Auth worker pool and the
/// Maildrop, and performs the session's actions (ARCHITECTURE.md "How a byte travels").
final class POP3Connection: ConnectionDelegate {
    /// What the glue is waiting for. A case's payload is what exists only in that phase;
    /// `enter(_:)` releases it when the phase is left (POP3Connection+Closing.swift).
    enum Phase {
        /// Between commands: input is parsed.
        case reading
        /// A login is being checked: the address's failure penalty runs (`penalty`), a hash
        /// or SASL step is queued or running on the hashing pool (`job`), or neither (a check
        /// done on the loop).
        case authenticating(penalty: TimerID?, job: WorkerPool.JobID?)
        /// The maildrop is being listed on a storage worker (POP3Connection+StorageJob.swift).
        case openingMaildrop(StorageJob)
        /// A LIST/UIDL listing is being produced under backpressure.
        case producing
        /// A RETR/TOP is being streamed under backpressure.
        case streaming(MessageStream)
        /// QUIT: the deletions run on a storage worker, which owns the maildrop meanwhile.
        case updating
        /// Closing for `EndReason`: output is flushed (or dropped), nothing more is read.
        case closing(EndReason)
        case closed

        /// Input waits in the kernel while the glue is busy with a command.
        var pausesInput: Bool {
            switch self {
            case .reading, .closing, .closed: return false
            default: return true
            }
        }

        var isReading: Bool {
            if case .reading = self { return true }
            return false
        }

        var isClosingOrClosed: Bool {
            switch self {
            case .closing, .closed: return true
            default: return false
            }
        }
    }

    /// `unowned(unsafe)` (no reference counting: nearly every command reads the service's
    /// configuration or metrics): the service outlives every use, by construction. A
    /// POP3Connection is held strongly only by its service (`sessions`, the pre-login queue)
    /// and by its open Connection (`delegate`); it is reached only through those, its
    /// Connection's callbacks and `[weak self]` closures of the loop's timers and the
    /// service's pools. `connectionClosed` removes it from the service (`sessionEnded`) after
    /// the Connection dropped its delegate, so it is freed there; a service freed with
    /// sessions still open closes their connections without callbacks first (`POP3Service`'s
    /// deinit), so those are freed with it and no closure finds them afterwards.
    unowned(unsafe) let service: POP3Service
    let connection: Connection
    let address: IPAddress?
    /// What the PROXY header said, for a connection from `proxy_networks`
    /// (POP3Service+Proxy.swift); nil otherwise.
    let proxy: ProxiedClient?
    var session: Session
    var parser = LineParser()
    /// Written only through `enter(_:)`, which releases what the phase left held, and
    /// `settle(_:)`, for a resource that completed by itself.
    private(set) var phase: Phase = .reading
    /// Open from login to the end of TRANSACTION; handed to the UPDATE job at QUIT.
    var maildrop: Maildrop?
    /// A SCRAM exchange in progress (POP3Connection+Login.swift): it spans several client
    /// lines, read in `.reading`, so it is not a phase resource; cleared at login and close.
    var scram: ScramServer?
    var scramEntry: UserEntry?
    /// `tls_handshake_timeout` for this session's handshake (POP3Connection+TLS.swift). The
    /// handshake runs inside the transport's reads, whatever the phase.
    var handshakeTimer: TimerID?
    /// The mechanism of the login under way, for `pop3d_logins_total`.
    var loginMechanism = LoginMechanism.user
    var loggedIn = false
    /// pump() is on the stack.
    var pumping = false
    let startedAt: UInt64
    /// Place in the service's pre-login queue (POP3Service+PreLogin.swift).
    var preLoginLinks = PreLoginLinks()

    init(service: POP3Service, connection: Connection, address: IPAddress?, implicitTLS: Bool,
         proxy: ProxiedClient? = nil) {
        self.service = service
        self.connection = connection
        self.address = address
        self.proxy = proxy
        self.startedAt = service.loop.now
        // Behind a balancer the "client == server" rule uses the header's two addresses, and
        // TLS between the client and the balancer (PP2_TYPE_SSL) counts as TLS.
        let clientTLS = proxy?.clientUsedTLS ?? false
        let local: IPAddress?
        if proxy != nil {
            local = proxy?.serverAddress
        } else if service.config.disablePlaintextAuth && !implicitTLS {
            // Only the plaintext rule reads it (`isSecured`). A listener bound to one address
            // gave it already; a wildcard one costs a getsockname (issue 17).
            local = (connection.listenerLocalAddress ?? SocketAddress.local(of: connection.fd))
                .flatMap { IPAddress(bytes: $0.addressBytes) }
        } else {
            local = nil
        }
        session = Session(config: service.makeSessionConfig(
            address: address, local: local, tlsActive: implicitTLS || clientTLS,
            stlsAvailable: !implicitTLS && !clientTLS && service.tls != nil))
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
        service.logger.debug("connected", metadata: clientMetadata(["connection.id": "\(connection.id)"]))
    }

    /// Moves to `next`, releasing what the phase being left still holds (a timer, a queued
    /// job, an open message file). The only writer of `phase`.
    func enter(_ next: Phase) {
        releasePhaseResources()
        countUpdateState(next)
        phase = next
    }

    /// Keeps `service.updatingCount` (the UPDATE state's gauge) in step with the phases.
    private func countUpdateState(_ next: Phase) {
        let was: Bool
        if case .updating = phase { was = true } else { was = false }
        let will: Bool
        if case .updating = next { will = true } else { will = false }
        if was != will { service.updatingCount += will ? 1 : -1 }
    }

    /// Moves to `next` after the phase's resource completed by itself (a timer that fired, a
    /// job whose completion runs): there is nothing left to cancel.
    func settle(_ next: Phase) {
        countUpdateState(next)
        phase = next
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
        while phase.isReading && !connection.isClosed {
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
                // The reply is copied into the output queue's free space and queued once, at
                // `finish()` below, instead of one `Connection.write` per fragment (issue 17:
                // a LIST line was four). Nothing else writes to the connection before that.
                var sink = OutputSink(connection: connection)
                defer { sink.finish() }
                switch event {
                case .needMore:
                    break
                case .line(let range):
                    let counted = session.counters.commands
                    action = session.handleLine(UnsafeRawBufferPointer(rebasing: bytes[range]), out: &sink)
                    if let metrics = service.metrics, session.counters.commands != counted {
                        metrics.command(session.lastCommand)
                    }
                case .tooLong:
                    action = session.lineTooLong(out: &sink)
                    service.metrics?.command(nil)
                }
                return consumed
            }
            guard let action else { return }
            handled += 1
            perform(action)
            if phase.pausesInput {
                // Mid-command (a stream, a listing, a login): further commands wait in the
                // kernel, not in our bounded input buffer (ARCHITECTURE.md: a producer stops the reading
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
            enter(.producing)
            produce()
        case .openMessage(let index, let bodyLines):
            openMessage(index: index, bodyLines: bodyLines)
        case .streamMessage:
            // Only `messageOpened` returns it, and `openMessage` handles that reply itself.
            close(.error("stream without an open message"))
        case .startTLS:
            startTLS()
        case .commitDeletions(let indices):
            commit(indices)
        case .close:
            let c = session.counters
            if c.badCommands >= service.config.maxBadCommands {
                close(.tooManyBadCommands)
            } else if c.authFailures >= service.config.maxAuthFailures {
                close(.tooManyFailedLogins)
            } else {
                close(.clientQuit)
            }
        }
    }

    /// Back to reading commands after an action completed.
    func resume() {
        guard !phase.isClosingOrClosed else { return }
        enter(.reading)
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
        case .streaming(let stream): self.stream(stream)
        default: break
        }
    }

    var metadata: Logger.Metadata {
        var fields: Logger.Metadata = ["connection.id": "\(connection.id)"]
        // Cut like the failed-login line's name (`LoggedOctets.maxOctets`).
        if let user = session.user { fields.setUserName(user.utf8) } else { fields["user"] = "-" }
        return clientMetadata(fields)
    }

    /// The client as log lines name it: the PROXY header's source when there was one (the
    /// balancer's address when it gave none), else the socket's peer.
    var clientName: String { proxy?.clientName ?? "\(connection.peer)" }

    /// `metadata` plus "client" and, behind a balancer, "proxy" (the balancer's address).
    func clientMetadata(_ metadata: Logger.Metadata) -> Logger.Metadata {
        var metadata = metadata
        metadata["client"] = "\(clientName)"
        if let proxy { metadata["proxy"] = "\(proxy.balancer)" }
        return metadata
    }
}
