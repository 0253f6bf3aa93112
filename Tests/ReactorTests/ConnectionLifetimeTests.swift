import CShim
import Glibc
import Testing
@testable import Reactor

/// Issue 17: the hot path holds no weak or checked-unowned references. `Connection.delegate`
/// is strong (cleared when the connection closes), the idle timer captures its connection
/// strongly (cancelled at close), `Connection.loop` is `unowned(unsafe)` (a freed loop
/// detaches its connections), and the close path makes no epoll_ctl call for a socket the
/// Reactor made itself. These tests check that nothing is kept alive and no call is made.
extension ReactorSuite {
    /// A delegate that holds its connection (as POP3Connection does): a cycle while open.
    final class Owner: ConnectionDelegate {
        var connection: Connection?
        var closed = false
        func connectionReadable(_ connection: Connection) {
            connection.withInput { $0.count }
        }
        func connectionClosed(_ connection: Connection, reason: CloseReason) { closed = true }
    }

    /// A connection on `fd` whose delegate owns it, with an idle timer armed (10 min).
    func ownedConnection(fd: Int32, loop: EventLoop) throws -> (Connection, Owner) {
        let connection = try Connection(fd: fd, peer: try loopback(1), loop: loop)
        let owner = Owner()
        owner.connection = connection
        connection.delegate = owner
        connection.idleTimeout = 600_000_000_000
        return (connection, owner)
    }

    /// Runs the loop until `closed` (the owner heard the close, or is gone), then two more
    /// turns, for whatever the close queued. Takes a closure, not the owner: no strong
    /// reference may outlive the caller's scope.
    func runUntilClosed(_ loop: EventLoop, _ closed: @escaping () -> Bool) throws {
        try runLoop(loop, until: closed)
        var turns = 0
        try runLoop(loop) { turns += 1; return turns > 2 }
    }

    /// A connection closed after its last reply (flush first), with an idle timer armed and a
    /// delegate that owns it: after the close and a loop turn, the connection and the delegate
    /// are freed (no cycle through the delegate, the timer or the loop's queues).
    @Test func aClosedConnectionAndItsDelegateAreFreed() throws {
        let loop = try EventLoop()
        let (a, peer) = try socketPair()
        defer { close(peer) }
        weak var weakConnection: Connection?
        weak var weakOwner: Owner?
        try {
            let (connection, owner) = try ownedConnection(fd: a, loop: loop)
            weakConnection = connection
            weakOwner = owner
            connection.write("+OK bye\r\n")
            connection.close(flushFirst: true)
        }()
        #expect(weakConnection != nil)  // still open: queued for its flush
        try runUntilClosed(loop) { weakOwner?.closed ?? true }
        #expect(weakConnection == nil)
        #expect(weakOwner == nil)
        #expect(readExactly(peer, 9) == Array("+OK bye\r\n".utf8))
        #expect(loop.scheduledTimerCount == 0)
    }

    /// A connection the peer closes is freed too (the path of a client that leaves).
    @Test func aConnectionClosedByItsPeerIsFreed() throws {
        let loop = try EventLoop()
        let (a, peer) = try socketPair()
        weak var weakConnection: Connection?
        weak var weakOwner: Owner?
        try {
            let (connection, owner) = try ownedConnection(fd: a, loop: loop)
            weakConnection = connection
            weakOwner = owner
        }()
        close(peer)
        try runUntilClosed(loop) { weakOwner?.closed ?? true }
        #expect(weakConnection == nil)
        #expect(weakOwner == nil)
    }

    /// A loop freed with a connection still open (its owner never closed it): the loop
    /// detaches it (closed, delegate dropped), so the connection ⇄ delegate cycle does not
    /// outlive the loop, and the connection never reaches the freed loop again.
    @Test func aLoopFreedWithAnOpenConnectionDetachesIt() throws {
        let (a, peer) = try socketPair()
        defer { close(peer) }
        weak var weakConnection: Connection?
        weak var weakOwner: Owner?
        var survivor: Connection?
        try {
            let loop = try EventLoop()
            let (connection, owner) = try ownedConnection(fd: a, loop: loop)
            connection.write("queued, never sent\r\n")
            weakConnection = connection
            weakOwner = owner
            survivor = connection
        }()
        #expect(weakOwner == nil)
        #expect(survivor?.isClosed == true)
        #expect(survivor?.delegate == nil)
        // Every entry point returns before reaching the (freed) loop.
        survivor?.write("late\r\n")
        survivor?.resumeReading()
        survivor?.pauseReading()
        survivor?.idleTimeout = 1_000_000
        survivor?.close(flushFirst: true)
        #expect(survivor?.pendingOutputBytes == 0)
        survivor = nil
        #expect(weakConnection == nil)
        close(a)  // a detached connection leaves its descriptor to its owner
    }

    /// The registered descriptors of an epoll instance, from /proc/self/fdinfo (`tfd:` lines).
    static func epollTargets(_ epfd: Int32) -> [Int32] {
        let fd = open("/proc/self/fdinfo/\(epfd)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        var targets: [Int32] = []
        for line in bytes.split(separator: 10) {
            let text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix("tfd:") else { continue }
            let number = text.dropFirst(4).drop { $0 == " " }.prefix { $0.isNumber }
            if let target = Int32(number) { targets.append(target) }
        }
        return targets
    }

    /// Runs the loop until `listener` has a connection and accepts it. An accept4 failure
    /// other than EAGAIN is thrown, not taken for "not yet".
    /// - Throws: the accept's `SyscallError`, or a failed requirement when nothing came in 10 s.
    func acceptWhenReady(_ listener: Listener, _ loop: EventLoop) throws -> AcceptedSocket {
        var accepted: AcceptedSocket?
        var failure: Error?
        try runLoop(loop) {
            do {
                accepted = try listener.acceptOne()
            } catch {
                failure = error
            }
            return accepted != nil || failure != nil
        }
        if let failure { throw failure }
        return try #require(accepted, "no connection to accept within 10 s")
    }

    /// The close after a last reply, on a socket the Reactor accepted: no epoll_ctl at all
    /// (no MOD to stop reading, no DEL: close(2) takes the only descriptor of the socket out
    /// of the epoll set), and the kernel's epoll set no longer lists it.
    @Test func closingAnAcceptedConnectionMakesNoEpollCtlCall() throws {
        let loop = try EventLoop()
        let listener = try Listener(bind: try loopback(0))
        defer { listener.close() }
        let port = try #require(listener.address?.port)
        let client = try Connection.connect(to: try loopback(port), loop: loop)
        let clientOwner = Owner()
        client.delegate = clientOwner
        let socket = try acceptWhenReady(listener, loop)
        let server = try Connection(accepted: socket, loop: loop)
        let owner = Owner()
        server.delegate = owner
        #expect(Self.epollTargets(loop.epfd).contains(socket.fd))
        server.write("+OK bye\r\n")
        let before = loop.epollControlCalls
        server.close(flushFirst: true)
        try runLoop(loop) { owner.closed }
        #expect(owner.closed)
        #expect(loop.epollControlCalls == before)
        #expect(!Self.epollTargets(loop.epfd).contains(socket.fd))
        client.close(flushFirst: false)
    }

    /// A descriptor handed to `Connection(fd:)` may have a copy elsewhere (here a dup): its
    /// close still deletes the registration, which close(2) alone would leave in the epoll set
    /// (epoll(7), Q6) to report events for a descriptor number we may reuse.
    @Test func closingADuplicatedDescriptorStillDeletesItsRegistration() throws {
        let loop = try EventLoop()
        let (a, peer) = try socketPair()
        defer { close(peer) }
        let copy = dup(a)
        try #require(copy >= 0)
        defer { close(copy) }
        let connection = try Connection(fd: a, peer: try loopback(1), loop: loop)
        let owner = Owner()
        connection.delegate = owner
        #expect(Self.epollTargets(loop.epfd).contains(a))
        connection.close(flushFirst: false)
        #expect(owner.closed)
        #expect(!Self.epollTargets(loop.epfd).contains(a))
    }

    /// TCP_NODELAY is set once, on the listening socket: Linux copies it into every socket
    /// accepted from it (checked here with a plain accept(2), not `acceptOne`).
    @Test func acceptedSocketsInheritTCPNoDelayFromTheListener() throws {
        let listener = try Listener(bind: try loopback(0))
        defer { listener.close() }
        #expect(listener.acceptedInheritNoDelay)
        let port = try #require(listener.address?.port)
        let loop = try EventLoop()
        let client = try Connection.connect(to: try loopback(port), loop: loop)
        var accepted: Int32 = -1
        try runLoop(loop) {
            accepted = accept(listener.fd, nil, nil)
            return accepted >= 0
        }
        try #require(accepted >= 0)
        defer { close(accepted) }
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(accepted, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &length) == 0)
        #expect(value != 0)
        client.close(flushFirst: false)
    }

    /// A socket inherited from systemd (here: a copy of one we bound) is looked at the same
    /// way: TCP_NODELAY set on it, its one address handed on unless it is transparent
    /// (IP_TRANSPARENT accepts connections for other addresses; not set here).
    @Test func anInheritedListenerSetsNoDelayAndKnowsItsAddress() throws {
        let bound = try Listener(bind: try loopback(0))
        defer { bound.close() }
        let copy = dup(bound.fd)
        try #require(copy >= 0)
        let inherited = try Listener(inheritedFD: copy, name: "pop3")
        defer { inherited.close() }
        #expect(inherited.acceptedInheritNoDelay)
        #expect(inherited.specificAddress != nil)
        #expect(inherited.specificAddress == bound.address)
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(copy, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &length) == 0)
        #expect(value != 0)
    }

    /// A listener bound to one address hands it to its sockets (no getsockname per
    /// connection); a wildcard listener does not (each connection asks the kernel).
    @Test func acceptedSocketsCarryTheLocalAddressOfASpecificListenerOnly() throws {
        let loop = try EventLoop()
        for (bind, specific) in [("127.0.0.1", true), ("0.0.0.0", false)] {
            let listener = try Listener(bind: try #require(SocketAddress(ip: bind, port: 0)))
            defer { listener.close() }
            let port = try #require(listener.address?.port)
            let client = try Connection.connect(to: try loopback(port), loop: loop)
            let socket = try acceptWhenReady(listener, loop)
            defer { close(socket.fd) }
            if specific {
                #expect(socket.localAddress == SocketAddress.local(of: socket.fd))
                #expect(socket.localAddress?.port == port)
            } else {
                #expect(socket.localAddress == nil)
            }
            client.close(flushFirst: false)
        }
    }
}
