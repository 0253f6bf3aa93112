import Synchronization

extension Maildrop {
    /// Tests only: a closure run by a worker's listing of the Maildir at a path, after the
    /// folders were read and before the login index is written, so that a test can deliver a
    /// message exactly there (the race the index's recorded folder states must survive).
    /// Keyed by path because tests run in parallel; empty in production (one lock per
    /// listing that reaches it, nothing else).
    static let listingTestHooks = Mutex<[String: @Sendable () -> Void]>([:])

    static func runTestHook(_ path: String) {
        let hook = listingTestHooks.withLock { $0[path] }
        hook?()
    }
}
