import Logging
import Reactor

/// The links of one connection in the `PreLoginQueue`, stored in the connection itself.
struct PreLoginLinks {
    var previous: POP3Connection?
    var next: POP3Connection?
    var isQueued = false
}

/// The connections not yet logged in, oldest first: an intrusive doubly linked list, so that
/// adding one (accept), removing one (login, end of session) and taking the oldest (eviction,
/// `login_timeout`) are O(1) and allocate nothing.
///
/// Connections are appended in accept order, so the list is also in `startedAt` order: the
/// oldest connection is the first whose login deadline passes, and one timer for the whole
/// list is enough. The links are strong; every connection leaves the list when it logs in or
/// ends (`POP3Service.sessionEnded`), which breaks the cycles.
struct PreLoginQueue {
    private(set) var oldest: POP3Connection?
    private(set) var newest: POP3Connection?
    private(set) var count = 0

    mutating func append(_ session: POP3Connection) {
        guard !session.preLoginLinks.isQueued else { return }
        session.preLoginLinks = PreLoginLinks(previous: newest, next: nil, isQueued: true)
        if let newest { newest.preLoginLinks.next = session } else { oldest = session }
        newest = session
        count += 1
    }

    /// Removes `session`; harmless when it is not in the list.
    mutating func remove(_ session: POP3Connection) {
        guard session.preLoginLinks.isQueued else { return }
        let previous = session.preLoginLinks.previous
        let next = session.preLoginLinks.next
        if let previous { previous.preLoginLinks.next = next } else { oldest = next }
        if let next { next.preLoginLinks.previous = previous } else { newest = previous }
        session.preLoginLinks = PreLoginLinks()
        count -= 1
    }
}

extension POP3Service {
    /// A connection closed before login (deadline, eviction) that does not read its last
    /// reply is dropped after this long, instead of holding its descriptor for `idle_timeout`.
    static let preLoginCloseGraceNanoseconds: UInt64 = 5_000_000_000

    /// Connections closed by `login_timeout` in one timer run; the rest wait for the next loop
    /// turn, so that a burst of connections accepted in the same second (10,000 at most)
    /// does not hold the loop while all of them are closed at once.
    static let loginTimeoutClosesPerTurn = 512

    var loginTimeoutNanoseconds: UInt64 { UInt64(max(1, config.loginTimeoutSeconds)) * 1_000_000_000 }

    /// A new connection enters AUTHORIZATION: it must log in within `login_timeout`.
    func preLoginStarted(_ session: POP3Connection) {
        preLogin.append(session)
        armLoginDeadline()
    }

    /// `max_unauthenticated` is full: closes the oldest pre-login connection, whatever it is
    /// doing (idle, mid-SASL, or waiting for a hash on the worker pool, whose result is then
    /// dropped), so that the new connection gets its slot.
    func evictOldestPreLogin(for newClient: String) {
        guard let oldest = preLogin.oldest else { return }
        metrics?.evicted.increment()
        preLogin.remove(oldest)
        logger.notice("pre-login connection evicted: max_unauthenticated (\(config.maxUnauthenticated)) reached", metadata: [
            "connection.id": "\(oldest.connection.id)", "client": "\(oldest.clientName)",
            "age": "\((loop.now &- oldest.startedAt) / 1_000_000)ms", "new.client": "\(newClient)",
        ])
        // RFC 3206 §4 [SYS/TEMP]: a server resource is short and a later try can work.
        oldest.closeBeforeLogin("-ERR [SYS/TEMP] connection queue full, try again later\r\n",
                                reason: .evicted)
    }

    /// Arms the one deadline timer for the oldest pre-login connection, unless it is armed.
    /// A timer left for a connection that has since logged in fires early and re-arms.
    func armLoginDeadline() {
        guard loginDeadlineTimer == nil, let oldest = preLogin.oldest else { return }
        let deadline = oldest.startedAt &+ loginTimeoutNanoseconds
        let now = loop.now
        loginDeadlineTimer = loop.scheduleTimer(after: deadline > now ? deadline - now : 0) { [weak self] in
            self?.loginDeadlinePassed()
        }
    }

    /// Closes every pre-login connection older than `login_timeout`, oldest first.
    func loginDeadlinePassed() {
        loginDeadlineTimer = nil
        let timeout = loginTimeoutNanoseconds
        let now = loop.now
        var closed = 0
        while closed < Self.loginTimeoutClosesPerTurn, let oldest = preLogin.oldest, now &- oldest.startedAt >= timeout {
            closed += 1
            preLogin.remove(oldest)
            logger.debug("login timeout", metadata: oldest.metadata)
            // Not a server condition, so no RFC 3206 code (Dovecot: "Disconnected for
            // inactivity."); the idle timeout's reply has none either.
            oldest.closeBeforeLogin("-ERR login timeout, closing connection\r\n", reason: .loginTimeout)
        }
        armLoginDeadline()
    }
}

extension POP3Connection {
    /// Tells the client why and closes. The reply is flushed first, but a client that does
    /// not read it is dropped after `preLoginCloseGraceNanoseconds`.
    func closeBeforeLogin(_ reply: StaticString, reason: EndReason) {
        guard !connection.isClosed, !phase.isClosingOrClosed, !loggedIn else { return }
        enter(.closing(reason))
        connection.write(reply)
        connection.close(flushFirst: true)
        if !connection.isClosed { connection.idleTimeout = POP3Service.preLoginCloseGraceNanoseconds }
    }
}
