import CShim
import Glibc
import Logging
import Synchronization
import Testing
@testable import Reactor
import TestSupport

extension ReactorSuite {
    /// Issue 10: a handler that busy-waits 80 ms makes one turn of 80 ms; the loop measures it,
    /// logs exactly one warning naming the cause (the slow connection), and a second slow turn
    /// right after is counted but not logged (rate limit).
    @Test func slowTurnLogsOneWarningWithItsCause() throws {
        let logs = LogRecorder()
        let loop = try EventLoop(logger: logs.logger(level: .trace))
        #expect(loop.loopLagWarningNanoseconds == 0)  // off unless the owner sets it
        loop.loopLagWarningNanoseconds = EventLoop.recommendedLoopLagWarning
        let (conn, rec, peer) = try recordedConnection(on: loop, port: 7)
        defer { close(peer) }
        rec.onReadable = { _ in
            let until = cshim_monotonic_ns() + 80_000_000
            while cshim_monotonic_ns() < until {}
        }
        // Some fast turns first: no warning.
        var ticks = 0
        try runLoop(loop) { ticks += 1; return ticks > 20 }
        #expect(logs.warnings.isEmpty)
        #expect(loop.turnStats.maxNanoseconds < 50_000_000)

        _ = write(peer, "x", 1)
        try runLoop(loop) { rec.readableCalls == 1 }
        ticks = 0
        try runLoop(loop) { ticks += 1; return ticks > 5 }  // the slow turn has ended
        let warnings = logs.warnings
        #expect(warnings.count == 1)
        let text = warnings.first ?? ""
        #expect(text.contains("event loop turn took"), "\(text)")
        #expect(text.contains("slowest connection \(conn.id)"), "\(text)")
        #expect(loop.turnStats.maxNanoseconds >= 80_000_000)
        #expect(loop.turnStats.slowTurns == 1)

        _ = write(peer, "y", 1)
        try runLoop(loop) { rec.readableCalls == 2 }
        ticks = 0
        try runLoop(loop) { ticks += 1; return ticks > 5 }
        #expect(logs.warnings.count == 1)  // rate-limited
        #expect(loop.turnStats.slowTurns == 2)
        loop.resetMaxTurn()
        ticks = 0
        try runLoop(loop) { ticks += 1; return ticks > 5 }
        #expect(loop.turnStats.maxNanoseconds < 50_000_000)
        conn.close(flushFirst: false)
    }

    /// Issue 9 finding 10: a burst of ClientHellos with a budget of 2 steps per turn. A plain
    /// session ready in the same epoll batch is served in the first turn; the handshakes step at
    /// most 2 per turn, oldest first, and every one of them completes.
    @Test func handshakeBudgetServesSessionsFirstAndEveryHandshakeCompletes() throws {
        let certs = try TLSFixture.certificates()
        defer { certs.remove() }
        let context = try TLSServerContext(certificates: [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))])
        let clientContext = try TLSClientContext()
        let loop = try EventLoop()
        loop.handshakeStepsPerTurn = 2
        let count = 12
        var servers: [Connection] = []
        var clients: [TLSStream] = []
        var clientFDs: [Int32] = []
        var transports: [TLSTransport] = []
        let recorders = (0..<count).map { _ in Recorder() }
        defer { for fd in clientFDs { close(fd) } }
        for _ in 0..<count {
            let (s, c) = try TLSFixture.socketPair()
            let transport = try TLSTransport(server: context, fd: s)
            let conn = try Connection(fd: s, peer: try loopback(9), loop: loop, transport: transport)
            conn.delegate = recorders[servers.count]
            conn.write("+OK ready\r\n")
            servers.append(conn)
            transports.append(transport)
            let client = try TLSStream(client: clientContext, fd: c)
            #expect(client.handshake() == .wantRead)  // the ClientHello is on its way
            clients.append(client)
            clientFDs.append(c)
        }
        let (plainFD, plainPeer) = try socketPair()
        defer { close(plainPeer) }
        let plain = try Connection(fd: plainFD, peer: try loopback(9), loop: loop)
        let plainRec = Recorder()
        plain.delegate = plainRec
        _ = write(plainPeer, "NOOP\r\n", 6)

        // Per turn (the hook runs after the deferred handshakes were served): the deferred count
        // and whether the plain session was served.
        var turns: [(deferred: Int, plainServed: Bool)] = []
        // Unowned: a hook the loop keeps must not keep the loop (LeakSanitizer, `make asan`).
        loop.addBeforeWaitHook { [unowned loop] in turns.append((loop.deferredHandshakeCount, plainRec.readableCalls > 0)) }
        var ticks = 0
        try runLoop(loop) { ticks += 1; return loop.deferredHandshakeCount == 0 && ticks > 2 }
        // The first hook ran before any epoll_wait; the second after the first turn.
        #expect(turns.count >= 3)
        if turns.count >= 3 {
            #expect(turns[1].plainServed)
            #expect(turns[1].deferred == count - 2)
            for i in 2..<turns.count where turns[i - 1].deferred > 0 {
                #expect(turns[i - 1].deferred - turns[i].deferred <= 2)
            }
        }
        // Every server sent its first flight: the clients finish, the greetings arrive in TLS.
        var greeted = 0
        var got = [[UInt8]](repeating: [], count: count)
        let done = try runLoop(loop, timeoutSeconds: 20) {
            greeted = 0
            for i in 0..<count {
                if clients[i].handshake() == .done {
                    var buffer = [UInt8](repeating: 0, count: 256)
                    if case .bytes(let n) = buffer.withUnsafeMutableBytes({ clients[i].read(into: $0) }), n > 0 {
                        got[i] += buffer[0..<n]
                    }
                }
                if got[i] == Array("+OK ready\r\n".utf8) { greeted += 1 }
            }
            return greeted == count
        }
        #expect(done, "\(greeted) of \(count) greeted")
        #expect(transports.allSatisfy { $0.isHandshakeComplete })
        for conn in servers { conn.close(flushFirst: false) }
        plain.close(flushFirst: false)
    }
}

extension ReactorSuite {
    /// A handshake waiting for budget whose client hangs up is closed without its step: the
    /// flood's "connect, send a ClientHello, close" costs no signature for connections still in
    /// the queue.
    @Test func deferredHandshakeOfAClientThatLeftCostsNoStep() throws {
        let certs = try TLSFixture.certificates()
        defer { certs.remove() }
        let context = try TLSServerContext(certificates: [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))])
        let loop = try EventLoop()
        loop.handshakeStepsPerTurn = 1
        var conns: [Connection] = []
        var fds: [Int32] = []
        var transports: [TLSTransport] = []
        let recorders = [Recorder(), Recorder()]
        for i in 0..<2 {
            let (s, c) = try TLSFixture.socketPair()
            let transport = try TLSTransport(server: context, fd: s)
            let conn = try Connection(fd: s, peer: try loopback(9), loop: loop, transport: transport)
            conn.delegate = recorders[i]
            let client = try TLSStream(client: try TLSClientContext(), fd: c)
            #expect(client.handshake() == .wantRead)
            conns.append(conn)
            fds.append(c)
            transports.append(transport)
        }
        // Turn 1: one step runs, the other connection is deferred.
        var deferredSeen = false
        loop.addBeforeWaitHook { [unowned loop] in if loop.deferredHandshakeCount == 1 { deferredSeen = true } }
        // The deferred one's client leaves before its turn comes: close it from the hook of
        // the very turn it was deferred in.
        var closedClient = false
        loop.addBeforeWaitHook {
            guard deferredSeen, !closedClient else { return }
            closedClient = true
            let waiting = conns.firstIndex { $0.isHandshakeDeferred } ?? 0
            close(fds[waiting])
            fds[waiting] = -1
        }
        let ended = try runLoop(loop) { recorders.contains { $0.closedReason != nil } }
        #expect(ended)
        #expect(deferredSeen)
        let gone = recorders.firstIndex { $0.closedReason != nil } ?? 0
        #expect(recorders[gone].closedReason == .peerClosed)
        #expect(transports[gone].failureReason == nil)  // no handshake step ran for it
        // Closed while queued: the connection let go of its TLS session at once.
        #expect(!(conns[gone].transport is TLSTransport))
        // It leaves the queue at the next turn's `serveDeferredHandshakes` without a step; the
        // run above may have stopped in the very turn of the close (its condition timer was
        // due then: often under AddressSanitizer's slower turns), so wait for that turn.
        #expect(try runLoop(loop) { loop.deferredHandshakeCount == 0 })
        #expect(transports[gone].failureReason == nil)  // dropped without a step
        for fd in fds where fd >= 0 { close(fd) }
        for conn in conns { conn.close(flushFirst: false) }
    }
}

extension ReactorSuite {
    /// A client that answered the server's flight (its Finished) is served ahead of the
    /// ClientHellos still waiting: a flood of ClientHellos queues a real client once, not twice.
    @Test func laterHandshakeStepsAreServedBeforeWaitingClientHellos() throws {
        let certs = try TLSFixture.certificates()
        defer { certs.remove() }
        let context = try TLSServerContext(certificates: [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))])
        let clientContext = try TLSClientContext()
        let loop = try EventLoop()
        loop.handshakeStepsPerTurn = 1
        var conns: [Connection] = []
        var clients: [TLSStream] = []
        var fds: [Int32] = []
        var transports: [TLSTransport] = []
        let recorders = (0..<6).map { _ in Recorder() }
        defer { for fd in fds { close(fd) } }
        func add() throws {
            let (s, c) = try TLSFixture.socketPair()
            let transport = try TLSTransport(server: context, fd: s)
            let conn = try Connection(fd: s, peer: try loopback(9), loop: loop, transport: transport)
            conn.delegate = recorders[conns.count]
            let client = try TLSStream(client: clientContext, fd: c)
            #expect(client.handshake() == .wantRead)
            conns.append(conn)
            clients.append(client)
            fds.append(c)
            transports.append(transport)
        }
        // The real client first: its ClientHello gets the step of the first turn.
        try add()
        var turns = 0
        loop.addBeforeWaitHook { turns += 1 }
        try runLoop(loop) { turns >= 2 }
        // Five flood ClientHellos arrive; the real client answers the server's flight.
        for _ in 0..<5 { try add() }
        var finished = false
        let sent = try runLoop(loop) {
            // Step the real client until its Finished is out (it then waits for nothing).
            if !finished { finished = clients[0].handshake() == .done }
            return finished
        }
        #expect(sent)
        // How many ClientHellos had their first step when the real client's handshake ended.
        var firstStepsRun = -1
        transports[0].onHandshakeComplete = { _ in
            firstStepsRun = (1..<conns.count).filter { conns[$0].handshakeStarted }.count
        }
        let done = try runLoop(loop) { transports[0].isHandshakeComplete }
        #expect(done)
        // One step per turn: at most the ClientHello that took the first turn's step went
        // before it (FIFO order would have run all five first).
        #expect(firstStepsRun <= 1, "\(firstStepsRun) ClientHellos served first")
        for conn in conns { conn.close(flushFirst: false) }
    }
}
