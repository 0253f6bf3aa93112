import CShim
import Glibc
import Logging
import Synchronization
import SystemCalls
import Testing
@testable import Reactor
import TestSupport

extension ReactorSuite {
    /// Issue 10 item 6: putting a paused listener back into epoll can fail (epoll_ctl MOD;
    /// here ENOENT, provoked for real by taking its descriptor out of the epoll set behind the
    /// loop's back, since ENOMEM cannot be). Before, the `try?` swallowed it: the listener
    /// stayed out of epoll for good with no log line. Now it stays paused, retries every
    /// backoff, logs the cause once, and accepts again (logging that once) when epoll_ctl
    /// works again.
    @Test func listenerResumeFailureIsLoggedOnceAndRetried() throws {
        let log = LogRecorder()
        let loop = try EventLoop(logger: log.logger())
        let listener = try Listener(bind: try loopback(), name: "pop3")
        let address = try #require(listener.address)
        var accepted: [Int32] = []
        try loop.addListener(listener) { socket in accepted.append(socket.fd) }
        let handler = try #require(loop.listenerHandlers[ObjectIdentifier(listener)])

        // Paused as on EMFILE (the EMFILE path itself is emfilePausesTheListener...'s test).
        handler.pause(SyscallError(errno: EMFILE, call: "accept4"))
        #expect(handler.paused)
        // The descriptor leaves the epoll set: the resume's epoll_ctl(MOD) gets ENOENT.
        #expect(Epoll.control(loop.epfd, EPOLL_CTL_DEL, listener.fd, events: 0, data: 0) == 0)

        let client = Socket.tcp(family: AF_INET)
        defer { close(client) }
        _ = address.withSockAddr { connect(client, $0, $1) }

        // Several backoffs pass: each resume attempt fails, the listener stays paused.
        try runLoop(loop, timeoutSeconds: 10) { handler.failedResumes >= 3 }
        #expect(handler.failedResumes >= 3)
        #expect(handler.paused)
        #expect(accepted.isEmpty)
        #expect(log.count("cannot resume accepting") == 1, "\(log.all)")
        let line = log.all.first { $0.contains("cannot resume accepting") } ?? ""
        #expect(line.contains("errno \(ENOENT)") && line.contains("listener=pop3"), "\(line)")

        // epoll works again (the descriptor is back in the set, still without interest): the
        // next attempt resumes, the waiting client is accepted, and that is logged once.
        try loop.register(fd: listener.fd, events: 0, handler: handler)
        try runLoop(loop, timeoutSeconds: 10) { accepted.count == 1 }
        #expect(accepted.count == 1)
        #expect(!handler.paused)
        #expect(handler.failedResumes == 0)
        #expect(log.count("accept resumed") == 1, "\(log.all)")
        #expect(log.count("cannot resume accepting") == 1)
        for fd in accepted { close(fd) }
        loop.removeListener(listener)
        listener.close()
    }
}
