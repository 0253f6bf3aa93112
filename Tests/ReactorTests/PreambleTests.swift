import CShim
import Glibc
import Testing
@testable import Reactor

/// A delegate that records the preamble's end and what the transport reads after it.
final class PreambleRecorder: ConnectionDelegate {
    let inner = Recorder()
    var preambleEnded = 0
    /// Bytes the delegate had been shown when the preamble ended (must be none).
    var bufferedAtPreambleEnd = -1

    func connectionReadable(_ connection: Connection) { inner.connectionReadable(connection) }
    func connectionClosed(_ connection: Connection, reason: CloseReason) { inner.connectionClosed(connection, reason: reason) }
    func connectionPreambleEnded(_ connection: Connection) {
        preambleEnded += 1
        bufferedAtPreambleEnd = connection.bufferedInputBytes
    }
}

/// A test preamble: any number of "P" then "\n"; any other octet is invalid. Records what it
/// was shown.
final class PreambleScanner {
    var calls: [[UInt8]] = []

    func scan(_ bytes: UnsafeRawBufferPointer) -> PreambleStep {
        calls.append(Array(bytes))
        for (index, byte) in bytes.enumerated() {
            if byte == UInt8(ascii: "\n") { return .complete(consumed: index + 1) }
            if byte != UInt8(ascii: "P") { return .invalid }
        }
        return .needMore
    }
}

extension ReactorSuite {
    private func writeAll(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// The preamble and the first application bytes in one write: the delegate sees only the
    /// application bytes, after the preamble's end, and the scanner saw the whole segment.
    @Test func preambleInTheSameSegmentAsTheFirstBytes() throws {
        let (loop, connection, recorder, scanner, peer) = try awaitingPreamble(maxBytes: 64)
        defer { close(peer) }
        writeAll(peer, "PPP\nhello\r\n")
        try runLoop(loop) { recorder.inner.received.count == 7 }
        #expect(recorder.preambleEnded == 1)
        #expect(recorder.bufferedAtPreambleEnd == 0)
        #expect(String(decoding: recorder.inner.received, as: UTF8.self) == "hello\r\n")
        #expect(!connection.isAwaitingPreamble)
        #expect(scanner.calls.first.map { String(decoding: $0, as: UTF8.self) } == "PPP\nhello\r\n")
        connection.close(flushFirst: false)
    }

    /// Byte by byte: the scanner sees the kept prefix plus the new byte each time, nothing is
    /// delivered before the end, and what follows is delivered after it.
    @Test func preambleSplitByteByByte() throws {
        let (loop, connection, recorder, scanner, peer) = try awaitingPreamble(maxBytes: 64)
        defer { close(peer) }
        for (index, byte) in "PPPP\n".utf8.enumerated() {
            writeAll(peer, String(UnicodeScalar(byte)))
            try runLoop(loop) { scanner.calls.count == index + 1 }
            #expect(scanner.calls.last?.count == index + 1)
            #expect(recorder.inner.readableCalls == 0)
        }
        #expect(recorder.preambleEnded == 1)
        writeAll(peer, "after")
        try runLoop(loop) { recorder.inner.received.count == 5 }
        #expect(String(decoding: recorder.inner.received, as: UTF8.self) == "after")
        #expect(scanner.calls.count == 5)
        connection.close(flushFirst: false)
    }

    /// An invalid preamble closes (reason .local) without a readable callback.
    @Test func invalidPreambleCloses() throws {
        let (loop, _, recorder, _, peer) = try awaitingPreamble(maxBytes: 64)
        defer { close(peer) }
        writeAll(peer, "PPX\n")
        try runLoop(loop) { recorder.inner.closedReason != nil }
        #expect(recorder.inner.closedReason == .local)
        #expect(recorder.preambleEnded == 0)
        #expect(recorder.inner.readableCalls == 0)
    }

    /// A preamble that never ends is closed at `maxBytes`, having kept no more than that.
    @Test func preambleLongerThanItsBoundCloses() throws {
        let (loop, _, recorder, scanner, peer) = try awaitingPreamble(maxBytes: 16)
        defer { close(peer) }
        writeAll(peer, String(repeating: "P", count: 40))
        try runLoop(loop) { recorder.inner.closedReason != nil }
        #expect(recorder.inner.closedReason == .local)
        #expect(scanner.calls.allSatisfy { $0.count <= 16 })
        #expect(recorder.preambleEnded == 0)
    }

    /// The peer closes mid-preamble: `.peerClosed`, no readable callback.
    @Test func peerClosingDuringThePreamble() throws {
        let (loop, _, recorder, _, peer) = try awaitingPreamble(maxBytes: 64)
        writeAll(peer, "PP")
        close(peer)
        try runLoop(loop) { recorder.inner.closedReason != nil }
        #expect(recorder.inner.closedReason == .peerClosed)
        #expect(recorder.inner.readableCalls == 0)
    }
}

extension ReactorSuite {
    /// A connection over a socketpair that awaits a preamble of at most `maxBytes`, scanned by
    /// a `PreambleScanner` and delivered to a `PreambleRecorder`; `peer` is the caller's to close.
    func awaitingPreamble(maxBytes: Int) throws
        -> (EventLoop, Connection, PreambleRecorder, PreambleScanner, Int32) {
        let loop = try EventLoop()
        let (a, peer) = try socketPair()
        let connection = try Connection(fd: a, peer: try loopback(1), loop: loop)
        let recorder = PreambleRecorder(), scanner = PreambleScanner()
        connection.delegate = recorder
        connection.expectPreamble(maxBytes: maxBytes) { scanner.scan($0) }
        return (loop, connection, recorder, scanner, peer)
    }
}
