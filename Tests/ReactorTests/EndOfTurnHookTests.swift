import Glibc
import Testing
@testable import Reactor

/// The end-of-turn hook (issue 17: the glue writes the turn's batched session-end lines there)
/// runs after the turn's output was flushed, so it sees a connection that closed once its last
/// reply drained in that flush. A before-wait hook does not: had the lines been written from
/// one, such a session's line would wait for the next event, which may never come.
@Suite struct EndOfTurnHookTests {
    @Test func hookSeesTheClosesOfTheTurnsFlush() throws {
        let loop = try EventLoop()
        let (a, b) = try socketPair()
        defer { close(b) }
        let address = try loopback(1)
        let recorder = Recorder()
        let connection = try Connection(fd: a, peer: address, loop: loop)
        connection.delegate = recorder
        recorder.onReadable = { connection in
            // A reply and a close after it: the reply is queued, the close waits for the flush.
            connection.write("bye\r\n")
            connection.close(flushFirst: true)
        }
        var turns: [(beforeWait: Bool, endOfTurn: Bool)] = []
        loop.addBeforeWaitHook { turns.append((recorder.closedReason != nil, false)) }
        loop.addEndOfTurnHook {
            if !turns.isEmpty { turns[turns.count - 1].endOfTurn = recorder.closedReason != nil }
        }
        #expect(write(b, "QUIT\r\n", 6) == 6)
        #expect(try runLoop(loop) { recorder.closedReason != nil })
        #expect(readExactly(b, 5) == Array("bye\r\n".utf8))
        // The turn whose flush closed the connection: its before-wait hook saw it open, its
        // end-of-turn hook saw it closed.
        #expect(turns.contains { !$0.beforeWait && $0.endOfTurn }, "\(turns)")
        // Once per turn, always after the before-wait hooks.
        #expect(turns.allSatisfy { !$0.beforeWait || $0.endOfTurn }, "\(turns)")
    }
}
