import Glibc
import Maildrop
import Reactor

/// A maildrop open running on a storage worker for one session's login (issue 9, finding 9).
///
/// Listing a Maildir whose messages must be read to count their sizes can take minutes (a
/// sparse file of terabytes reads as zeros); the session reads no input meanwhile, so the
/// reactor would not notice a client that left until the job is done. While the job runs, a
/// timer looks at the socket every `clientCheckNanoseconds`; a client that has gone closes
/// the session, and closing raises `cancellation`, which the listing checks between files and
/// between read chunks: the worker and the maildrop lock are free again within a chunk.
final class StorageJob {
    /// How often a pending maildrop open checks that its client is still there: one
    /// `poll(2)` per second per pending open, nothing at all for opens done on the loop.
    static let clientCheckNanoseconds: UInt64 = 1_000_000_000
    /// `POLLRDHUP` (Linux, `<poll.h>` with _GNU_SOURCE, which Swift's Glibc module does not
    /// define): the peer shut down its writing side. Seen whether or not unread bytes (a TLS
    /// close_notify) are still queued, unlike a MSG_PEEK read of end-of-stream.
    static let pollReadHangUp: Int16 = 0x2000

    let cancellation = CancellationFlag()
    var timer: TimerID?
}

/// A maildrop handed to a storage worker for the UPDATE state. Unchecked Sendable: from the
/// submission on, only the job touches it (the connection has let go of it); the job commits
/// the deletions, then releases the lock, so no other session can open the maildrop half
/// updated.
struct UpdatingMaildrop: @unchecked Sendable {
    let maildrop: Maildrop

    func commitAndClose(_ indices: [Int], markingSeen seen: [Int] = []) -> (CommitResult, SeenResult) {
        let result = maildrop.commit(deleting: indices)
        // After the deletions (they are what QUIT promises), before the lock is released.
        let marked = seen.isEmpty ? SeenResult() : maildrop.markSeen(seen)
        maildrop.close()
        return (result, marked)
    }
}

extension POP3Connection {
    /// Starts watching the client of the storage job just submitted (the phase is
    /// `.openingMaildrop(job)`).
    func watchStorageJob(_ job: StorageJob) {
        job.timer = service.loop.scheduleTimer(after: StorageJob.clientCheckNanoseconds) { [weak self, weak job] in
            guard let self, let job, case .openingMaildrop(let current) = self.phase, current === job,
                  !self.connection.isClosed else { return }
            job.timer = nil
            if self.clientHasLeft() {
                // Closing raises the job's cancellation flag (`releasePhaseResources`).
                return self.abort(.clientDisconnected)
            }
            self.watchStorageJob(job)
        }
    }

    /// The storage job is done (or its phase is left): stop watching, and tell a job still
    /// running that nobody waits for it. Idempotent.
    func endStorageJob(_ job: StorageJob, cancel: Bool) {
        if let timer = job.timer { service.loop.cancelTimer(timer) }
        job.timer = nil
        if cancel { job.cancellation.cancel() }
    }

    /// Whether the peer hung up or shut down its side, without reading anything.
    func clientHasLeft() -> Bool {
        var entry = pollfd(fd: connection.fd, events: Int16(POLLIN) | StorageJob.pollReadHangUp, revents: 0)
        guard poll(&entry, 1, 0) == 1 else { return false }
        let gone = Int16(POLLHUP) | Int16(POLLERR) | StorageJob.pollReadHangUp
        return entry.revents & gone != 0
    }
}
