import Auth
import Logging
import Maildrop
import POP3
import Reactor

/// A maildrop opened on a storage worker and handed to the loop. Unchecked Sendable: the worker
/// creates it and never touches it again; from then on only the loop thread uses it.
struct OpenedMaildrop: @unchecked Sendable {
    let result: Result<Maildrop, MaildropError>
    /// The session-end line's `uidl_change=`, hashed here on the worker: for a large maildrop
    /// it costs milliseconds (`UIDLChange`).
    var uidlChange: UIDLChange?

    init(path: String, allowRootSymlink: Bool, loginDelaySeconds: Int, uidl: UIDLOptions, cancellation: CancellationFlag,
         wireSize: WireSizeRule = WireSizeRule()) {
        do {
            let drop = try Maildrop.open(
                path: path, allowRootSymlink: allowRootSymlink, loginDelaySeconds: loginDelaySeconds,
                uidl: uidl, cancellation: cancellation, wireSize: wireSize)
            var change = UIDLChange()
            for m in drop.messages { change.add(m.uid) }
            uidlChange = change
            result = .success(drop)
        } catch {
            result = .failure(error)
        }
    }
}

/// Login: credentials checked (on the loop or the hashing pool, after the failure penalty:
/// POP3Connection+AuthQueue.swift), the maildrop opened (on the loop when quick, else on the
/// storage workers: POP3Connection+StorageJob.swift), the outcome handed to the session, and
/// the SASL relay for SCRAM-SHA-256. The `+OK` of a login is written by the session only in
/// `loginFinished(.success)`, after the maildrop is open and locked.
extension POP3Connection {
    /// An address with recent failures first waits out its penalty (Dovecot's auth penalty:
    /// before the verification, so waiting attackers hold no hashing worker); then the
    /// credentials are checked, on the loop when a digest suffices, else on the worker pool.
    func authenticate(_ request: AuthRequest) {
        loginMechanism = request.mechanism
        enter(.authenticating(penalty: nil, job: nil))
        afterPenalty { $0.verify(request) }
    }

    private func verify(_ request: AuthRequest) {
        let mechanism = request.mechanism
        switch request {
        case .password(let user, let password, _):
            guard password.count <= CostLimits.maxPasswordLength else {
                // Refused without hashing: SHA-crypt's cost grows with the length.
                service.logger.notice("password longer than \(CostLimits.maxPasswordLength) octets refused",
                                      metadata: metadata)
                return authFailed(user: user, mechanism: mechanism)
            }
            lookUp(user) { connection, found in
                connection.verifyPassword(password, user: user, mechanism: mechanism, lookup: found)
            }
        case .apop(let user, let digest, let timestamp):
            // MD5 is cheap: no need for the pool. Unknown user and wrong digest look alike.
            lookUp(user) { connection, found in
                connection.checkOnLoop(user: user, mechanism: mechanism, lookup: found) {
                    apopDigestMatches(entry: $0, timestamp: timestamp, digestHex: digest)
                }
            }
        case .cramMD5(let user, let digest, let challenge):
            lookUp(user) { connection, found in
                connection.checkOnLoop(user: user, mechanism: mechanism, lookup: found) {
                    CramMD5.digestMatches(entry: $0, challenge: Array(challenge.utf8), digestHex: Array(digest.utf8))
                }
            }
        case .undecodable(let user, _):
            // Nothing to verify, but a failed login all the same: logged, counted, penalised.
            authFailed(userOctets: user, mechanism: mechanism)
        }
    }

    /// Looks the user up (`POP3Service.lookupUser`: at once for the passwd-file and cache
    /// hits, else a query on the loop) and runs `then` if this login still waits for it. A
    /// user database that cannot answer ends the login with `-ERR [SYS/TEMP]`: the password
    /// was not found wrong, so no failure is recorded.
    ///
    /// A query holds one unit of the address's `auth_max_queued_per_ip` while it waits or
    /// runs, as a hash does: one address cannot fill the pool's queue (and make every other
    /// client's login wait its `sql_query_timeout`) by sending many logins at once.
    func lookUp(_ user: String, mode: LookupMode = .cached, then: @escaping (POP3Connection, UserLookup) -> Void) {
        let service = self.service
        let address = self.address
        var held = false
        var overQuota = false
        let beforeQuery: () -> Bool = {
            guard let address else { return true }
            held = service.authQuota.acquire(address)
            overQuota = !held
            return held
        }
        service.lookupUser(user, mode: mode, abandoned: loginAbandoned, beforeQuery: beforeQuery) { [weak self] found in
            if held, let address { service.authQuota.release(address) }
            guard let self, case .authenticating = self.phase, !self.connection.isClosed else { return }
            if overQuota {
                service.logger.notice("login refused: auth_max_queued_per_ip (\(service.authQuota.limit)) reached",
                                      metadata: self.metadata)
                return self.loginFinished(.temporaryFailure("too many logins in progress from your address"))
            }
            if case .unavailable(let why) = found {
                self.service.logger.debug("user database unavailable: \(why)", metadata: self.metadata)
                return self.loginFinished(.temporaryFailure("user database unavailable, try again later"))
            }
            then(self, found)
        }
    }

    /// For the user database's queue: true once this login no longer waits for its lookup
    /// (the session left the authenticating phase, or the client closed: while a login waits
    /// the session reads nothing, so its end-of-stream is seen only by `clientHasClosed`'s
    /// peek, one syscall when the lookup's turn comes). The pool then skips the query: a flood
    /// of USER/PASS-and-close would otherwise hold every connection (issue 15).
    var loginAbandoned: () -> Bool {
        { [weak self] in
            guard let self, case .authenticating = self.phase, !self.connection.isClosed else { return true }
            return self.clientHasClosed()
        }
    }

    /// USER/PASS, SASL PLAIN and LOGIN: the password verified against the entry (an unknown
    /// user against `dummyEntry`, same cost), on the loop when a digest suffices, else on the
    /// worker pool.
    private func verifyPassword(_ password: [UInt8], user: String, mechanism: LoginMechanism, lookup: UserLookup) {
        let entry: UserEntry?
        if case .found(let e, _) = lookup { entry = e } else { entry = nil }
        let target = entry ?? service.dummyEntry
        let matches: @Sendable () -> Bool = { Auth.verify(password: password, entry: target) && entry != nil }
        if target.scheme.isCheap {
            // PLAIN, SSHA and friends cost a digest: a trip through the worker pool (two
            // thread wake-ups, an eventfd round trip) would cost more than the work.
            return verified(matches(), user: user, mechanism: mechanism, lookup: lookup) {
                $0.verifyPassword(password, user: user, mechanism: mechanism, lookup: $1)
            }
        }
        submitAuthJob(matches, isFailure: { !$0 }) { connection, ok in
            connection.verified(ok, user: user, mechanism: mechanism, lookup: lookup) {
                $0.verifyPassword(password, user: user, mechanism: mechanism, lookup: $1)
            }
        }
    }

    /// APOP and CRAM-MD5: the digest checked on the loop against the entry's cleartext.
    private func checkOnLoop(user: String, mechanism: LoginMechanism, lookup: UserLookup,
                             matches: @escaping (UserEntry) -> Bool) {
        var ok = false
        if case .found(let entry, _) = lookup { ok = matches(entry) }
        verified(ok, user: user, mechanism: mechanism, lookup: lookup) {
            $0.checkOnLoop(user: user, mechanism: mechanism, lookup: $1, matches: matches)
        }
    }

    /// The check's outcome. A mismatch against a *cached* entry gets one fresh lookup (the
    /// password may have changed since it was cached: issue 15) and, when the database gives
    /// another entry, `recheck` runs on it; otherwise the login fails.
    private func verified(_ ok: Bool, user: String, mechanism: LoginMechanism, lookup: UserLookup,
                          recheck: @escaping (POP3Connection, UserLookup) -> Void) {
        if ok, case .found(let entry, _) = lookup {
            return credentialsChecked(user: user, entry: entry, mechanism: mechanism)
        }
        guard case .found(let cachedEntry, cached: true) = lookup else {
            return credentialsChecked(user: user, entry: nil, mechanism: mechanism)
        }
        service.lookupUser(user, mode: .fresh, abandoned: loginAbandoned) { [weak self] fresh in
            guard let self, case .authenticating = self.phase, !self.connection.isClosed else { return }
            switch fresh {
            case .found(let entry, _) where entry != cachedEntry:
                recheck(self, .found(entry, cached: false))
            case .unavailable:
                // The cached secret did not match and the database cannot say whether it
                // changed: a temporary failure, but a failed login all the same (logged with
                // `reason=`, the line fail2ban matches, and counted against the address), so
                // that an outage is no time to guess passwords unseen.
                self.authFailed(user: user, mechanism: mechanism,
                                outcome: .temporaryFailure("user database unavailable, try again later"))
            default:
                self.credentialsChecked(user: user, entry: nil, mechanism: mechanism)
            }
        }
    }

    /// The verification result is in: open the maildrop, or fail (the failure delays the
    /// address's next attempt, `afterPenalty`).
    func credentialsChecked(user: String, entry: UserEntry?, mechanism: LoginMechanism) {
        guard case .authenticating = phase, !connection.isClosed else { return }
        guard let entry else {
            return authFailed(user: user, mechanism: mechanism)
        }
        if let address { service.penalties.recordSuccess(from: address) }
        let path: String
        do {
            // A `mail` column (SQL) overrides the global location for this user.
            let location = try entry.mail.map { try MailLocation(template: $0) } ?? service.location
            path = try location.path(user: user, home: entry.home)
        } catch {
            service.logger.warning("mail location refused: \(error)", metadata: metadata)
            return loginFinished(.permanentFailure("invalid mailbox name"))
        }
        // A small maildrop whose sizes are known (names, size cache) is listed right here: a
        // directory read and a stat per message. A large one, or one whose messages must be
        // read to count CRLF octets (a first login; seconds for a big Maildir on a cold disk),
        // is opened on the storage workers, so the loop never waits for it.
        // LOGIN-DELAY is checked and recorded by the open, under the maildrop lock, in the
        // lock file's modification time: it holds across processes and hosts sharing the Maildir.
        let allowRootSymlink = service.config.maildirAllowRootSymlink
        let loginDelay = service.config.loginDelaySeconds
        let uidl = UIDLOptions(format: service.config.uidlFormat)
        let wireSize = WireSizeRule(session.config.clientWorkarounds)
        do {
            return maildropOpened(
                .success(try Maildrop.open(path: path, quick: true, allowRootSymlink: allowRootSymlink,
                                           loginDelaySeconds: loginDelay, uidl: uidl, wireSize: wireSize)), user: user)
        } catch .wouldBlock {
            // fall through to the workers
        } catch {
            return maildropOpened(.failure(error), user: user)
        }
        let job = StorageJob()
        let cancellation = job.cancellation
        let submitted = service.storagePool.submit({
            OpenedMaildrop(path: path, allowRootSymlink: allowRootSymlink, loginDelaySeconds: loginDelay,
                           uidl: uidl, cancellation: cancellation, wireSize: wireSize)
        }) { [weak self, weak job] opened in
            guard let self, let job, case .openingMaildrop(let current) = self.phase, current === job,
                  !self.connection.isClosed else {
                if case .success(let drop) = opened.result { drop.close() }  // client gone: release the lock
                return
            }
            self.endStorageJob(job, cancel: false)
            self.settle(.authenticating(penalty: nil, job: nil))
            self.maildropOpened(opened.result, user: user, uidlChange: opened.uidlChange)
        }
        if case .queued = submitted {
            enter(.openingMaildrop(job))
            watchStorageJob(job)
        } else {
            loginFinished(.temporaryFailure("storage service overloaded"))
        }
    }

    /// `uidlChange` is nil for a maildrop listed on the loop (at most `Maildrop.quickEntryLimit`
    /// messages): hashed here, in the loop that copies the listing anyway.
    private func maildropOpened(_ result: Result<Maildrop, MaildropError>, user: String, uidlChange: UIDLChange? = nil) {
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
            if let why = drop.statistics.uidlFallback {
                // Once per login: the client sees maildir UIDLs this session (issue 14).
                service.logger.warning("uidl_format \(service.config.uidlFormat.rawValue) not applied, UIDLs fall back to maildir for this session: \(why)", metadata: metadata)
            }
            if let why = drop.statistics.indexDiscarded {
                service.logger.notice("login index \(drop.path)/pop3d.index discarded and rebuilt: \(why)", metadata: metadata)
            }
            if let error = drop.statistics.indexError {
                // The login works; the next ones list the folders until the cause is fixed.
                service.logger.warning("login index not written: \(error)", metadata: metadata)
            }
            if let error = drop.statistics.loginRecordError {
                // Logged once per failed write: the login works, without LOGIN-DELAY.
                service.logger.warning("LOGIN-DELAY record not written: \(error)", metadata: metadata)
            }
            logUIDLState(drop.statistics)
            var sizes: [Int] = []
            var uids: [String] = []
            sizes.reserveCapacity(drop.count)
            uids.reserveCapacity(drop.count)
            var change = uidlChange ?? UIDLChange()
            let lastEnabled = session.config.lastEnabled
            var lastSeen = 0
            // The fields read in place (issue 17: `for m in drop.messages` copied every
            // `MessageInfo`, retaining and releasing its three strings).
            let messages = drop.messages
            for i in messages.indices {
                sizes.append(messages[i].size)
                uids.append(messages[i].uid)
                if uidlChange == nil { change.add(messages[i].uid) }
                // RFC 1725 LAST starts at the highest message marked seen (Dovecot's rule).
                if lastEnabled && messages[i].isSeen { lastSeen = sizes.count }
            }
            loggedIn = true
            connection.maxBlockedOutputBytes = .max
            service.sessionLoggedIn(self, user: user)
            service.logger.debug("logged in", metadata: metadata.merging(
                ["messages": "\(drop.count)", "uids_assigned": "\(drop.statistics.uidsAssigned)"]) { $1 })
            loginFinished(.success(MaildropListing(sizes: sizes, uids: uids, uidlChange: change, lastSeen: lastSeen)))
        case .failure(.inUse):
            loginFinished(.inUse)
        case .failure(.loginDelay(let left)):
            service.logger.debug("login too soon (LOGIN-DELAY): \(left) s left", metadata: metadata)
            loginFinished(.loginDelay)
        case .failure(.temporary(let why)):
            service.logger.error("maildrop: \(why)", metadata: metadata)
            loginFinished(.temporaryFailure("mailbox temporarily unavailable"))
        case .failure(let error):
            service.logger.error("maildrop: \(error)", metadata: metadata)
            loginFinished(.permanentFailure("mailbox unavailable"))
        }
    }

    /// Logs the failed login (one `notice` line per failure, the line fail2ban matches:
    /// `login failed client=… connection.id=… mechanism=… user=…`, the name escaped and cut at
    /// `LoggedOctets.maxOctets`), records the failure (the address's next attempt waits its
    /// penalty, see `afterPenalty`) and answers at once: the wait comes before the next hash,
    /// not after this one.
    func authFailed(user: String, mechanism: LoginMechanism, outcome: LoginOutcome = .authFailed) {
        authFailed(userOctets: user.utf8, mechanism: mechanism, outcome: outcome)
    }

    func authFailed(userOctets user: some Collection<UInt8>, mechanism: LoginMechanism,
                    outcome: LoginOutcome = .authFailed) {
        var fields: Logger.Metadata = ["connection.id": "\(connection.id)", "mechanism": "\(mechanism.logName)"]
        fields.setUserName(user)
        if case .temporaryFailure = outcome { fields["reason"] = "user database unavailable" }
        service.logger.notice("login failed", metadata: clientMetadata(fields))
        if let address { _ = service.penalties.recordFailure(from: address) }
        loginFinished(outcome)
    }

    func loginFinished(_ outcome: LoginOutcome) {
        if let metrics = service.metrics { metrics.login(loginMechanism, LoginResultLabel(outcome)) }
        guard !connection.isClosed, !phase.isClosingOrClosed else { return }
        scram = nil
        scramEntry = nil
        var sink = ConnectionSink(connection: connection)
        let action = session.loginFinished(outcome, out: &sink)
        enter(.reading)
        perform(action)
        if phase.isReading { resume() }
    }

    // MARK: SASL relay (SCRAM-SHA-256)

    func saslStep(_ step: SASLStep) {
        let mechanism = LoginMechanism(step.mechanism)
        loginMechanism = mechanism
        enter(.authenticating(penalty: nil, job: nil))
        switch step.index {
        case 0:
            // The start of a SCRAM exchange is the start of an attempt: the penalty comes first.
            let message = step.message
            afterPenalty { connection in
                guard let name = ScramServer.authenticationIdentity(message) else {
                    return connection.scramFirst(message, entry: nil, mechanism: mechanism)
                }
                // SCRAM's proof is checked against one entry per exchange, so a cached entry
                // is used only when the database is down (`LookupMode.freshOrStale`).
                connection.lookUp(name, mode: .freshOrStale) { connection, found in
                    if case .found(let entry, _) = found {
                        connection.scramFirst(message, entry: entry, mechanism: mechanism)
                    } else {
                        connection.scramFirst(message, entry: nil, mechanism: mechanism)
                    }
                }
            }
        case 1:
            // The proof check derives keys with PBKDF2 for PLAIN-stored users and for unknown
            // users (the decoy): thousands of HMACs, so it runs on the pool, under the same
            // per-address quota and cancellation as any hash (issue 10).
            guard let server = scram else { return authFailed(user: "?", mechanism: mechanism) }
            let message = step.message
            submitAuthJob({ ScramFinal(result: server.receiveClientFinal(message)) },
                          isFailure: { !$0.verified }) { connection, final in
                switch final.result {
                case .success(let f) where f.verified:
                    connection.scramEntry = f.entry
                    connection.challenge(f.serverFinal)
                case .success, .failure:
                    connection.authFailed(user: server.username ?? "?", mechanism: mechanism)
                }
            }
        default:
            let user = scram?.username ?? ""
            let entry = scramEntry
            scram = nil
            scramEntry = nil
            credentialsChecked(user: user, entry: entry, mechanism: mechanism)
        }
    }

    /// SCRAM's first step with the looked-up entry (nil: unknown, a decoy exchange), on the
    /// worker pool (random nonce, and it keeps SCRAM's cost off the loop).
    private func scramFirst(_ message: [UInt8], entry: UserEntry?, mechanism: LoginMechanism) {
        submitAuthJob({ () -> ScramFirst in
            var server = ScramServer()
            let r = server.receiveClientFirst(message, lookup: { _ in entry })
            return ScramFirst(server: server, result: r)
        }) { connection, first in
            switch first.result {
            case .success(let serverFirst):
                connection.scram = first.server
                connection.challenge(serverFirst)
            case .failure:
                connection.authFailed(user: first.server.username ?? "?", mechanism: mechanism)
            }
        }
    }

    private func challenge(_ bytes: [UInt8]) {
        var sink = ConnectionSink(connection: connection)
        session.saslChallenge(bytes, out: &sink)
        resume()
    }
}
