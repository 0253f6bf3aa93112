import Logging
import Reactor

/// Why a session ended: the `reason` of the session summary line. Every way a connection
/// closes maps to exactly one case (`connectionClosed`).
enum EndReason: Equatable, CustomStringConvertible {
    /// QUIT (in either state), or the session closed itself after its last reply.
    case clientQuit
    /// The client closed its side without QUIT, or left while its login or listing ran.
    case clientDisconnected
    /// `idle_timeout` (RFC 1939 §3 autologout).
    case idleTimeout
    /// `login_timeout` before the login (POP3Service+PreLogin.swift).
    case loginTimeout
    /// Closed to make room under `max_unauthenticated`.
    case evicted
    /// `max_bad_commands` reached.
    case tooManyBadCommands
    /// `max_auth_failures` reached.
    case tooManyFailedLogins
    /// SIGTERM drain: closed between commands.
    case serverShutdown
    /// The drain's deadline passed with the session still busy.
    case shutdownTimeout
    /// ECONNRESET/EPIPE.
    case connectionReset
    /// The client's input outgrew the connection's input bound.
    case inputLimitExceeded
    /// Before login, the client did not read its replies.
    case outputLimitExceeded
    /// The TLS transport failed: OpenSSL's reason, or "handshake timeout".
    case tlsFailure(String)
    /// A message failed after its `+OK` (a read error, a file cut short by another program).
    case messageUnreadable(String)
    /// The glue found no maildrop where one must be (a bug, logged, never a crash).
    case storageFailure(String)
    /// Any other socket error.
    case error(String)

    /// The text of the summary line's `reason=` (tests and operators grep these).
    var description: String {
        switch self {
        case .clientQuit: return "client quit"
        case .clientDisconnected: return "client disconnected"
        case .idleTimeout: return "idle timeout"
        case .loginTimeout: return "login timeout"
        case .evicted: return "evicted: max_unauthenticated reached"
        case .tooManyBadCommands: return "too many bad commands"
        case .tooManyFailedLogins: return "too many failed logins"
        case .serverShutdown: return "server shutdown"
        case .shutdownTimeout: return "shutdown timeout"
        case .connectionReset: return "connection reset"
        case .inputLimitExceeded: return "input limit exceeded"
        case .outputLimitExceeded: return "output limit exceeded before login (client does not read)"
        case .tlsFailure(let why): return "TLS \(why)"
        case .messageUnreadable(let why): return "message unreadable: \(why)"
        case .storageFailure(let why): return "storage failure: \(why)"
        case .error(let why): return "error: \(why)"
        }
    }
}

/// Idle timeout, drain, abort and close, the release of what the current phase holds, and
/// the session summary line.
extension POP3Connection {
    func connectionWillTimeOut(_ connection: Connection) {
        // A connection already closing (a login deadline's grace) keeps its reason.
        guard !phase.isClosingOrClosed else { return }
        var sink = ConnectionSink(connection: connection)
        session.idleTimedOut(out: &sink)
        enter(.closing(.idleTimeout))
    }

    /// Drain: a session between commands is told and closed; busy ones come back here
    /// when their command is done.
    func closeIfIdle() {
        guard phase.isReading, !connection.isClosed else { return }
        connection.write("-ERR [SYS/TEMP] Server shutting down\r\n")
        close(.serverShutdown)
    }

    /// Closes at once, dropping queued output.
    func abort(_ reason: EndReason) {
        if !phase.isClosingOrClosed { enter(.closing(reason)) }
        connection.close(flushFirst: false)
    }

    /// Flushes queued output, then closes.
    func close(_ reason: EndReason) {
        if !phase.isClosingOrClosed { enter(.closing(reason)) }
        connection.close(flushFirst: true)
    }

    /// Releases what the current phase holds; `enter` calls it on every transition, so a
    /// timer, a queued hash, a storage job or an open message file never outlives its phase.
    func releasePhaseResources() {
        switch phase {
        case .authenticating(let penalty, let job):
            if let penalty { service.loop.cancelTimer(penalty) }
            if let job { cancelAuthJob(job) }
        case .openingMaildrop(let job):
            endStorageJob(job, cancel: true)
        case .streaming(let stream):
            stream.reader.close()
        case .reading, .producing, .updating, .closing, .closed:
            break
        }
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        var closingReason: EndReason? = nil
        if case .closing(let r) = phase { closingReason = r }
        enter(.closed)
        // Read before cancelHandshakeWatch: a handshake still running is one that failed.
        let tlsHandshaking = handshakeTimer != nil || ended(byHandshakeTimeout: closingReason)
        cancelHandshakeWatch()
        scram = nil
        scramEntry = nil
        // A session that ends any other way than QUIT deletes nothing (RFC 1939 §6).
        maildrop?.close()
        maildrop = nil
        let ended: EndReason
        switch reason {
        // A connection already closing (a login deadline, an eviction, QUIT) keeps its reason.
        case .local: ended = closingReason ?? .clientQuit
        case .idleTimeout: ended = closingReason ?? .idleTimeout
        case .peerClosed: ended = closingReason ?? (session.isClosed ? .clientQuit : .clientDisconnected)
        case .reset: ended = .connectionReset
        case .inputLimitExceeded: ended = .inputLimitExceeded
        case .outputLimitExceeded: ended = .outputLimitExceeded
        case .error(let e):
            // The transport knows why it failed (TLS: OpenSSL's reason); the errno does not.
            if let why = connection.transport.failureReason {
                ended = .tlsFailure(why)
            } else {
                ended = .error("\(e)")
            }
        }
        let c = session.counters
        let seconds = Double(service.loop.now &- startedAt) / 1e9
        let client: SessionSummary.Client
        if let proxy { client = .named(proxy.clientName) } else { client = .peer(connection.peer) }
        let summary = SessionSummary(
            connectionID: connection.id, client: client, counters: c,
            durationMilliseconds: Int(seconds * 1000), reason: ended, user: session.user,
            proxy: proxy?.summaryMetadata)
        if let metrics = service.metrics, proxy?.isHealthCheck != true {
            metrics.sessionEnded(ended)
            // Counted when the session ends (a message counts as retrieved once its +OK and
            // body were queued; deletions happen only in UPDATE).
            if c.messagesRetrieved > 0 {
                metrics.retrievedMessages.increment(by: Int64(c.messagesRetrieved))
                metrics.retrievedBytes.increment(by: Int64(clamping: c.octetsRetrieved))
            }
            if c.topCount > 0 { metrics.topMessages.increment(by: Int64(c.topCount)) }
            if c.messagesDeleted > 0 { metrics.deletedMessages.increment(by: Int64(c.messagesDeleted)) }
            if tlsHandshaking { metrics.tlsHandshake(ok: false, version: nil) }
        }
        if proxy?.isHealthCheck == true {
            // v2 LOCAL: the balancer's health check, not a client session.
            service.sessionEndLog.log(summary, message: "health check end", level: .debug, logger: service.logger)
        } else {
            service.sessionEndLog.log(summary, message: "session end", level: .info, logger: service.logger)
        }
        service.sessionEnded(self, wasLoggedIn: loggedIn)
    }
}
