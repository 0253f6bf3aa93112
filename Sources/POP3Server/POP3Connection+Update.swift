import Maildrop
import POP3
import Reactor

/// The UPDATE state (RFC 1939 §6). QUIT's reply is written by the session in
/// `updateFinished`, after the deletions are done: `+OK` only when every message is gone.
extension POP3Connection {
    /// Runs on a storage worker: thousands of unlinks (and a listing when messages were
    /// renamed by another program) never run on the loop. The connection reads nothing
    /// meanwhile; the reply to QUIT comes when the job is done, and the maildrop lock is held
    /// until then. A client that leaves meanwhile loses nothing: the job finishes its
    /// deletions (QUIT was given), releases the lock, and the result is logged.
    func commit(_ indices: [Int]) {
        guard let maildrop else {
            var sink = ConnectionSink(connection: connection)
            return perform(session.updateFinished(failed: 0, out: &sink))
        }
        // `LAST` on: what RETR sent gets the seen flag (Session+Last.swift); empty otherwise.
        let seen = session.messagesToMarkSeen
        if indices.isEmpty && seen.isEmpty {
            // Nothing to remove or rename: UPDATE is releasing the lock (a close(2), what a
            // dropped connection does on the loop too). No trip through a storage worker, so
            // the commonest QUIT costs no pause of the connection's reading (epoll_ctl), no
            // thread wake-up and no eventfd round trip (issue 17).
            self.maildrop = nil
            maildrop.close()
            return updateFinished(failed: 0, failedOctets: 0)
        }
        // From here the job owns the maildrop: closing must not release its lock while the
        // deletions run.
        self.maildrop = nil
        enter(.updating)
        let job = UpdatingMaildrop(maildrop: maildrop)
        let logger = service.logger
        // The lines below are for failures: their metadata is built only when one is logged
        // (building it at every QUIT cost some 10k instructions, 1.3 % of a session; issue 17).
        let identity = LogIdentity(self)
        let submitted = service.storagePool.submit({ job.commitAndClose(indices, markingSeen: seen) }) { [weak self] outcome in
            let (result, marked) = outcome
            if let error = marked.firstError {
                // A flag costs no mail: logged, the QUIT still succeeds.
                logger.warning("UPDATE: \(marked.failed) message(s) not marked seen: \(error)", metadata: identity.metadata)
            }
            if let error = result.firstError {
                logger.error("UPDATE: \(result.failed) message(s) not removed: \(error)", metadata: identity.metadata)
            }
            guard let self, case .updating = self.phase, !self.connection.isClosed else {
                logger.info("UPDATE finished after the client left: \(result.deleted) deleted, \(result.failed) not removed",
                            metadata: identity.metadata)
                return
            }
            self.updateFinished(failed: result.failed, failedOctets: result.failedOctets)
        }
        if case .queued = submitted { return }
        // No worker will take it (queue full, shutting down): nothing is removed, and the
        // client is told so (RFC 1939 §6 -ERR); the next session can try again.
        maildrop.close()
        logger.error("UPDATE: storage workers unavailable, \(indices.count) message(s) not removed", metadata: identity.metadata)
        updateFinished(failed: indices.count, failedOctets: .max)
    }

    private func updateFinished(failed: Int, failedOctets: Int) {
        enter(.reading)
        var sink = ConnectionSink(connection: connection)
        let action = session.updateFinished(failed: failed, failedOctets: failedOctets, out: &sink)
        perform(action)
    }
}
