import Synchronization

/// A one-way flag the loop raises when the client of a storage job has gone, and the job
/// (on a storage worker) reads between files and between read chunks, so that listing a
/// Maildir of huge files (a sparse 15 TiB file reads as zeros for hours) stops soon after its
/// client left instead of holding a worker and the maildrop lock until it is done.
///
/// Queued jobs are another matter: whether a job that has not started yet can be dropped is
/// `WorkerPool`'s business; a dropped or cancelled open throws `.cancelled` and holds nothing.
public final class CancellationFlag: Sendable {
    private let raised = Atomic<Bool>(false)

    /// A flag not raised yet.
    public init() {}

    /// Raises the flag. Idempotent; callable from any thread.
    public func cancel() { raised.store(true, ordering: .relaxed) }

    /// Whether `cancel()` was called. Relaxed: a job that sees it one chunk late loses nothing.
    public var isCancelled: Bool { raised.load(ordering: .relaxed) }
}
