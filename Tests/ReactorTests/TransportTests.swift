import CShim
import Glibc
import SystemCalls
import Testing
@testable import Reactor

/// A stand-in for TLS: XORs every byte with a key, and keeps what it read from the socket in
/// its own buffer, handing it out a few bytes per read (like SSL_read with SSL_pending > 0).
final class XorTransport: Transport {
    let key: UInt8
    let piece: Int
    var pending: [UInt8] = []
    init(key: UInt8, piece: Int) {
        self.key = key
        self.piece = piece
    }

    func read(fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> TransportResult {
        if pending.isEmpty {
            var raw = [UInt8](repeating: 0, count: 4096)
            let n = raw.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n == 0 { return .endOfStream }
            if n < 0 {
                if errno == EAGAIN { return .wouldBlock(needs: .readable) }
                throw SyscallError(errno: errno, call: "read")
            }
            pending = raw[0..<n].map { $0 ^ key }
        }
        let n = min(piece, pending.count, buffer.count)
        for i in 0..<n { buffer[i] = pending[i] }
        pending.removeFirst(n)
        return .bytes(n)
    }

    func write(fd: Int32, _ chunks: UnsafeBufferPointer<iovec>) throws -> TransportResult {
        guard let first = chunks.first, let base = first.iov_base else { return .wouldBlock(needs: .writable) }
        let bytes = UnsafeRawBufferPointer(start: base, count: first.iov_len).map { $0 ^ key }
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n < 0 { return .wouldBlock(needs: .writable) }
        return .bytes(n)
    }

    var hasBufferedInput: Bool { !pending.isEmpty }
    func willClose(fd: Int32) {}
}

extension ReactorSuite {
    /// STLS through the Transport seam: the "+OK" leaves in plaintext, bytes the client pipelined
    /// after the STLS line are discarded (RFC 2595 section 4), later traffic goes through the new
    /// transport, and plaintext the transport already holds is delivered without new epoll events.
    @Test func transportSwitchMidStreamDiscardsPipelinedPlaintextAndDrainsBufferedInput() throws {
        let loop = try EventLoop()
        let (conn, rec, peer) = try recordedConnection(on: loop)
        defer { close(peer) }
        rec.consume = false
        var lines: [String] = []
        rec.onReadable = { c in
            while let bytes = c.takeLine() {
                let line = String(decoding: bytes.dropLast(), as: UTF8.self)
                lines.append(line)
                if line == "STLS" {
                    c.write("+OK begin\n" as StaticString)
                    c.switchTransport(to: XorTransport(key: 0x5A, piece: 3))
                    return
                }
                if line == "QUIT" { c.write("+OK bye\n" as StaticString) }
            }
        }
        _ = write(peer, "STLS\nINJECTED\n", 14)
        try runLoop(loop) { lines.count >= 1 }
        #expect(String(decoding: readExactly(peer, 10), as: UTF8.self) == "+OK begin\n")
        try runLoop(loop) { conn.transport is XorTransport }
        // One socket write of two commands; the transport returns 3 bytes per read, so all but
        // the first piece come from its buffer (hasBufferedInput), never from epoll.
        let protected = Array("CAPA\nQUIT\n".utf8).map { $0 ^ 0x5A }
        _ = protected.withUnsafeBytes { write(peer, $0.baseAddress, $0.count) }
        try runLoop(loop) { lines.count >= 3 }
        #expect(lines == ["STLS", "CAPA", "QUIT"])
        let reply = readExactly(peer, 8).map { $0 ^ 0x5A }
        #expect(String(decoding: reply, as: UTF8.self) == "+OK bye\n")
        conn.close(flushFirst: false)
    }

    @Test func signalsArriveAsLoopEvents() throws {
        let loop = try EventLoop()
        var got: [Int32] = []
        try loop.onSignals([SIGUSR2]) { got.append($0) }
        defer { var s = [SIGUSR2]; _ = cshim_unblock_signals(&s, 1) }
        // Directed at this thread, where it is blocked: only the signalfd can take it.
        pthread_kill(pthread_self(), SIGUSR2)
        try runLoop(loop) { !got.isEmpty }
        #expect(got == [SIGUSR2])
    }

    /// A process-directed signal lands on some other thread of the test process (they do not
    /// block it); it must be forwarded to the loop, not kill the process with the default action.
    @Test func processDirectedSignalTakenByAnotherThreadReachesTheLoop() throws {
        let loop = try EventLoop()
        var got: [Int32] = []
        try loop.onSignals([SIGUSR1]) { got.append($0) }
        defer { var s = [SIGUSR1]; _ = cshim_unblock_signals(&s, 1) }
        var other = pthread_t()
        // A thread that certainly has SIGUSR1 unblocked, sending to the whole process.
        pthread_create(&other, nil, { _ in
            var s = [SIGUSR1]
            _ = cshim_unblock_signals(&s, 1)
            kill(getpid(), SIGUSR1)
            return nil
        }, nil)
        try runLoop(loop) { !got.isEmpty }
        pthread_join(other, nil)
        #expect(got == [SIGUSR1])
    }
}
