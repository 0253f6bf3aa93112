import Glibc
@testable import Reactor
import Testing
@testable import POP3Server

/// Issue 17: `Connection.delegate` is strong and `POP3Connection.service` `unowned(unsafe)`, so
/// a session is freed only because its close breaks the Connection ⇄ POP3Connection cycle
/// (`Connection.finalize` drops the delegate, `sessionEnded` the service's entry). These tests
/// hold weak probes on the session objects of a real server and check that both are gone once
/// the session ended, however it ended.
@Suite(.serialized) struct SessionLifetimeTests {
    /// Weak references to one session's objects. Written and read only on the harness's loop
    /// thread (`onLoop` runs one closure at a time there), hence `@unchecked Sendable`.
    final class Probe: @unchecked Sendable {
        weak var session: POP3Connection?
        weak var connection: Connection?
        var taken = false

        /// Takes the one session the service has now.
        func take(_ side: LoopSide) {
            guard side.service.sessions.count == 1, let session = side.service.sessions.values.first else { return }
            self.session = session
            connection = session.connection
            taken = true
        }

        var freed: Bool { session == nil && connection == nil }
    }

    @Test func aSessionEndedByQuitIsFreed() throws {
        let server = try ServerHarness()
        try server.deliver("alice", Array("Subject: hi\r\n\r\nbody\r\n".utf8))
        let c = try server.aliceLoggedIn()
        #expect(try c.command("RETR 1").hasPrefix("+OK"))
        _ = try c.multiline()
        let probe = Probe()
        #expect(try server.onLoop { side in probe.take(side); return probe.taken })
        #expect(try server.onLoop { _ in probe.freed } == false)  // the probe does see a live session
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        #expect(try c.waitForClose())
        #expect(try waitFor { try server.counts() == .zero })
        // One more loop turn after the close (onLoop wakes the loop): nothing may hold them.
        #expect(try waitFor { try server.onLoop { _ in probe.freed } })
    }

    @Test func aSessionWhoseClientVanishesBeforeLoginIsFreed() throws {
        let server = try ServerHarness()
        let c = try server.client()
        #expect(try c.line().hasPrefix("+OK"))
        #expect(try c.command("USER alice").hasPrefix("+OK"))
        let probe = Probe()
        #expect(try server.onLoop { side in probe.take(side); return probe.taken })
        c.reset()
        #expect(try waitFor { try server.counts() == .zero })
        #expect(try waitFor { try server.onLoop { _ in probe.freed } })
    }

    /// The commonest end of a session, QUIT with nothing deleted: UPDATE only releases the
    /// lock, on the loop, so the close makes no epoll_ctl call at all (before issue 17: a MOD
    /// pausing the reading while a storage worker did nothing, and the DEL of the close).
    @Test func aQuitThatDeletesNothingMakesNoEpollCtlCall() throws {
        let server = try ServerHarness()
        try server.deliver("alice", Array("Subject: hi\r\n\r\nbody\r\n".utf8))
        let c = try server.aliceLoggedIn()
        #expect(try c.command("STAT") == "+OK 1 21")
        let before = try server.onLoop { side in side.loop.epollControlCalls }
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        #expect(try c.waitForClose())
        #expect(try waitFor { try server.counts() == .zero })
        #expect(try server.onLoop { side in side.loop.epollControlCalls } == before)
        // The lock was released: the next session opens the maildrop, its message still there.
        let again = try server.aliceLoggedIn()
        #expect(try again.command("STAT") == "+OK 1 21")
        #expect(try again.command("QUIT").hasPrefix("+OK"))
    }

    /// A QUIT that deletes still runs on a storage worker (the connection reads nothing
    /// meanwhile: one MOD), and its close makes no DEL.
    @Test func aQuitThatDeletesPausesReadingOnceAndClosesWithoutDel() throws {
        let server = try ServerHarness()
        try server.deliver("alice", Array("Subject: hi\r\n\r\nbody\r\n".utf8))
        let c = try server.aliceLoggedIn()
        #expect(try c.command("DELE 1").hasPrefix("+OK"))
        let before = try server.onLoop { side in side.loop.epollControlCalls }
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        #expect(try c.waitForClose())
        #expect(try waitFor { try server.counts() == .zero })
        #expect(try server.onLoop { side in side.loop.epollControlCalls } == before + 1)
        let again = try server.aliceLoggedIn()
        #expect(try again.command("STAT") == "+OK 0 0")
        #expect(try again.command("QUIT").hasPrefix("+OK"))
    }

    /// A service freed with a session still open (the harness stops its loop without closing
    /// it): the service closes the connection without callbacks, so the session does not
    /// outlive the service it holds `unowned(unsafe)`.
    @Test func aServiceFreedWithAnOpenSessionFreesTheSession() throws {
        let loop = try EventLoop()
        let root = try TempRoot()
        defer { root.remove() }
        try root.write("passwd", Array("alice:{PLAIN}secret:1000:1000::\(root.path)/alice::\n".utf8))
        var config = ServerConfig()
        config.mail = "maildir:\(root.path)/%u/Maildir"
        config.passwdFile = "\(root.path)/passwd"
        var pair: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0, &pair) == 0)
        defer { Glibc.close(pair[1]) }
        weak var weakSession: POP3Connection?
        weak var weakConnection: Connection?
        weak var weakService: POP3Service?
        try {
            let service = try POP3Service(config: config, loop: loop, logger: loop.logger)
            weakService = service
            let peer = try #require(SocketAddress(ip: "127.0.0.1", port: 1))
            let connection = try Connection(fd: pair[0], peer: peer, loop: loop)
            service.startSession(connection, address: nil, implicitTLS: false, tlsTransport: nil, proxy: nil)
            weakSession = service.sessions.values.first
            weakConnection = connection
            #expect(weakSession != nil)
            #expect(!connection.isClosed)
        }()
        #expect(weakService == nil)
        #expect(weakSession == nil)
        // Closed by the service's deinit: it no longer reaches the service or its delegate.
        #expect(weakConnection?.isClosed ?? true)
        #expect(weakConnection?.delegate == nil)
    }
}
