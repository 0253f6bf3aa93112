import CShim
import Glibc
import Logging
import SystemCalls
import Testing
@testable import Reactor
import TestSupport

extension ReactorSuite {
    /// A listener shared by worker processes is registered with EPOLLEXCLUSIVE, which the
    /// kernel refuses to EPOLL_CTL_MOD (EINVAL). An EMFILE pause must still take it out of
    /// epoll (DEL) and the resume put it back (ADD), and connections must be accepted again.
    @Test func exclusiveListenerPausesAndResumesWithDeleteAndAdd() throws {
        let log = LogRecorder()
        let loop = try EventLoop(logger: log.logger())
        let listener = try Listener(bind: try loopback(), name: "pop3")
        let address = try #require(listener.address)
        var accepted: [Int32] = []
        try loop.addListener(listener, exclusive: true) { socket in accepted.append(socket.fd) }
        let handler = try #require(loop.listenerHandlers[ObjectIdentifier(listener)])
        #expect(handler.events & Epoll.exclusive != 0)
        // The kernel really holds an exclusive registration: MOD is refused.
        #expect(Epoll.control(loop.epfd, EPOLL_CTL_MOD, listener.fd, events: Epoll.input | Epoll.exclusive, data: 0) != 0)

        handler.pause(SyscallError(errno: EMFILE, call: "accept4"))
        #expect(handler.paused)
        // Out of the epoll set: deleting it again finds nothing.
        #expect(Epoll.control(loop.epfd, EPOLL_CTL_DEL, listener.fd, events: 0, data: 0) != 0 && errno == ENOENT)

        let client = Socket.tcp(family: AF_INET)
        defer { close(client) }
        _ = address.withSockAddr { connect(client, $0, $1) }
        try runLoop(loop, timeoutSeconds: 10) { accepted.count == 1 }
        #expect(accepted.count == 1)
        #expect(!handler.paused)
        #expect(log.count("cannot take the listener out of epoll") == 0, "\(log.all)")
        #expect(log.count("cannot resume accepting") == 0, "\(log.all)")
        for fd in accepted { close(fd) }
        loop.removeListener(listener)
        listener.close()
    }
}

extension ReactorSuite {
    /// `holdAccepting` takes every listener out of epoll until `releaseAccepting`, also when an
    /// EMFILE pause is running at the same time (its timer must not put a held listener back,
    /// and the release must put back a listener whose pause ended meanwhile), for plain and
    /// EPOLLEXCLUSIVE registrations alike.
    @Test(arguments: [false, true]) func heldListenersAcceptNothingUntilReleased(exclusive: Bool) throws {
        let loop = try EventLoop(logger: Logger(label: "test"))
        let listener = try Listener(bind: try loopback(), name: "pop3")
        let address = try #require(listener.address)
        var accepted: [Int32] = []
        try loop.addListener(listener, exclusive: exclusive) { socket in accepted.append(socket.fd) }
        let handler = try #require(loop.listenerHandlers[ObjectIdentifier(listener)])

        handler.pause(SyscallError(errno: EMFILE, call: "accept4"))
        loop.holdAccepting()
        #expect(loop.isHoldingAccepts)
        #expect(!loop.isRegistered(fd: listener.fd))
        let client = Socket.tcp(family: AF_INET)
        defer { close(client) }
        _ = address.withSockAddr { connect(client, $0, $1) }
        // The pause's backoff (100 ms) passes twice over while held: nothing is accepted.
        let until = cshim_monotonic_ns() + 3 * Listener.acceptBackoffNanoseconds
        try runLoop(loop, timeoutSeconds: 10) { cshim_monotonic_ns() >= until }
        #expect(accepted.isEmpty)
        #expect(!handler.paused, "the pause ended while held")
        #expect(!loop.isRegistered(fd: listener.fd))

        loop.releaseAccepting()
        #expect(!loop.isHoldingAccepts)
        try runLoop(loop, timeoutSeconds: 10) { accepted.count == 1 }
        #expect(accepted.count == 1)
        for fd in accepted { close(fd) }
        loop.removeListener(listener)
        listener.close()
    }
}
