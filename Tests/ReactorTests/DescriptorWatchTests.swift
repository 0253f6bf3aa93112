import CShim
import Glibc
import Testing
@testable import Reactor

/// DescriptorWatch reports readiness of a descriptor the loop does not read (libpq's socket).
struct DescriptorWatchTests {
    @Test func reportsReadinessFollowsTheInterestAndForgetsTheDescriptorOnCancel() throws {
        let loop = try EventLoop()
        let (ours, peer) = try socketPair()
        defer { close(ours) }
        var events: [(Bool, Bool)] = []
        let watch = try DescriptorWatch(loop: loop, fd: ours, read: true, write: false, label: "test") {
            events.append(($0, $1))
        }
        #expect(loop.isRegistered(fd: ours))
        // Nothing to read yet: no event within 100 ms.
        #expect(try !runLoop(loop, timeoutSeconds: 0.1) { !events.isEmpty })
        _ = write(peer, "x", 1)
        #expect(try runLoop(loop) { !events.isEmpty })
        #expect(events.first.map { $0.0 && !$0.1 } == true, "readable only: \(events)")

        // Asking for writability: an empty send buffer is writable at once.
        events.removeAll()
        try watch.want(read: false, write: true)
        #expect(try runLoop(loop) { !events.isEmpty })
        #expect(events.first.map { $0.1 } == true)

        // No interest: the unread byte and the free buffer no longer wake the loop.
        try watch.want(read: false, write: false)
        events.removeAll()
        #expect(try !runLoop(loop, timeoutSeconds: 0.1) { !events.isEmpty })

        // The peer hangs up: EPOLLHUP comes whatever the interest, as readable and writable.
        close(peer)
        #expect(try runLoop(loop) { !events.isEmpty })
        #expect(events.first.map { $0.0 && $0.1 } == true, "\(events)")

        watch.cancel()
        #expect(!loop.isRegistered(fd: ours))
        watch.cancel()  // idempotent
        try watch.want(read: true, write: true)  // ignored once cancelled
        #expect(!loop.isRegistered(fd: ours))
    }
}
