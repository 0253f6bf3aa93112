import Auth
import Glibc
import Reactor

/// The hashing pool is shared by every client, so each login's use of it is bounded here
/// (issue 9, finding 6): the failure penalty is served before a hash is queued, one address
/// may have at most `auth_max_queued_per_ip` hashes queued or running, and a client that
/// closes its connection takes its queued hash with it.
extension POP3Connection {
    /// Runs `next` once the client address's failure penalty has passed (at once when there
    /// is none). The session is `.waiting` meanwhile and reads nothing; a close cancels the
    /// timer (`releasePhaseResources`), so a waiting attacker costs a timer, not a worker.
    func afterPenalty(_ next: @escaping (POP3Connection) -> Void) {
        let delay = address.map { service.penalties.delayBeforeAttempt(from: $0) } ?? .zero
        let (seconds, attoseconds) = delay.components
        let ns = seconds <= 0 && attoseconds <= 0
            ? 0 : UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds) / 1_000_000_000)
        if ns == 0 { return next(self) }
        if let metrics = service.metrics {
            metrics.penalties.increment()
            metrics.penaltySeconds.increment(by: Double(ns) / 1e9)
        }
        let timer = service.loop.scheduleTimer(after: ns) { [weak self] in
            // Leaving `.authenticating` cancels this timer (`releasePhaseResources`); a
            // connection gone meanwhile is nil here.
            guard let self, case .authenticating(.some, let job) = self.phase, !self.connection.isClosed else { return }
            self.settle(.authenticating(penalty: nil, job: job))
            next(self)
        }
        enter(.authenticating(penalty: timer, job: nil))
    }

    /// Queues `job` on the hashing pool for this session's login and runs `then` with its
    /// result on the loop, if the session still waits for it. Refused with `-ERR [SYS/TEMP]`
    /// when the address already has `auth_max_queued_per_ip` jobs, or the pool is full.
    ///
    /// When the client has gone before a started job ends, a result that `isFailure` calls a
    /// failure still counts against its address: abandoning a guess does not dodge the penalty.
    func submitAuthJob<R: Sendable>(_ job: @escaping @Sendable () -> R,
                                    isFailure: ((R) -> Bool)? = nil,
                                    then: @escaping (POP3Connection, R) -> Void) {
        let service = self.service
        let address = self.address
        if clientHasClosed() {
            // USER/PASS then close: nobody is left to answer, so no hash is spent on it.
            return abort(.clientDisconnected)
        }
        // An address's first outstanding hash goes ahead of any address's second one (trusted
        // networks, a proxy for many users, always go first).
        let lane: WorkerPool.Lane = address.map {
            service.authQuota.outstanding($0) == 0 || service.authQuota.trusted.contains($0) ? .first : .later
        } ?? .first
        if let address, !service.authQuota.acquire(address) {
            service.logger.notice("login refused: auth_max_queued_per_ip (\(service.authQuota.limit)) reached",
                                  metadata: metadata)
            return loginFinished(.temporaryFailure("too many logins in progress from your address"))
        }
        let submitted = service.pool.submit(job, lane: lane) { [weak self] result in
            if let address { service.authQuota.release(address) }
            guard let self, case .authenticating(_, .some) = self.phase, !self.connection.isClosed else {
                if let address, isFailure?(result) == true { _ = service.penalties.recordFailure(from: address) }
                return
            }
            // The job is done: nothing left to cancel.
            self.settle(.authenticating(penalty: nil, job: nil))
            then(self, result)
        }
        switch submitted {
        case .queued(let id):
            enter(.authenticating(penalty: nil, job: id))
        case .overloaded, .shutDown:
            if let address { service.authQuota.release(address) }
            loginFinished(.temporaryFailure("authentication service overloaded"))
        }
    }

    /// True when the client has closed its side and sent nothing more: a non-blocking
    /// `MSG_PEEK` reads end-of-stream. While a login waits, the session does not read (so the
    /// reactor reports no end-of-stream, only a reset); this one syscall per hash catches the
    /// abandoning client whose FIN arrived with its PASS or during its penalty. Not while the
    /// transport holds input the socket no longer shows (TLS: decrypted commands).
    func clientHasClosed() -> Bool {
        guard connection.bufferedInputBytes == 0, !connection.transport.hasBufferedInput else { return false }
        var byte: UInt8 = 0
        return recv(connection.fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) == 0
    }

    /// Leaving `.authenticating` (a close, an eviction): a hash that has not started is
    /// dropped (and its unit of the address's quota given back); one already running
    /// finishes and its completion gives the unit back.
    func cancelAuthJob(_ id: WorkerPool.JobID) {
        if service.pool.cancel(id), let address { service.authQuota.release(address) }
    }
}

/// The result of SCRAM's first step, computed on a worker.
struct ScramFirst: Sendable {
    var server: ScramServer
    var result: Result<[UInt8], ScramServer.Failure>
}

/// The result of SCRAM's final step (the proof check), computed on a worker.
struct ScramFinal: Sendable {
    var result: Result<ScramServer.Final, ScramServer.Failure>

    var verified: Bool {
        if case .success(let f) = result { return f.verified }
        return false
    }
}
