import CShim
import Glibc
import Testing
@testable import Reactor

/// A peer that sends `line` over and over and never reads, bounded in total bytes.
private final class Flooder {
    let fd: Int32
    let block: [UInt8]
    let limit: Int
    /// Bytes sent in total; the stream is whole lines up to the last partial one.
    private(set) var sent = 0

    init(fd: Int32, line: String, limit: Int) {
        self.fd = fd
        block = Array(String(repeating: line, count: 256).utf8)
        self.limit = limit
    }

    /// Sends as much as the nonblocking socket takes (at most 1 MiB); returns the bytes sent.
    func pour() -> Int {
        var now = 0
        while sent < limit && now < 1 << 20 {
            let offset = sent % block.count
            let n = block.withUnsafeBytes { bytes in
                send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if n <= 0 { break }
            sent += n
            now += n
        }
        return now
    }
}

extension ReactorSuite {
    /// A loop and a server-side connection over a socketpair whose kernel buffers are 8 KiB
    /// each way, so a peer that does not read blocks the output soon; the client's descriptor
    /// is the caller's to close.
    func smallBufferedConnection() throws -> (EventLoop, Connection, Int32) {
        let loop = try EventLoop()
        let (server, client) = try socketPair()
        _ = setBufferSizes(server, 8192, 8192)
        _ = setBufferSizes(client, 8192, 8192)
        return (loop, try Connection(fd: server, peer: try loopback(1), loop: loop), client)
    }

    /// Issue 9, finding 1 (regression): a peer that sends commands and never reads the replies.
    /// Every line gets a 200-byte reply; once the pending output reaches the high-water mark the
    /// connection shows the delegate no more lines and reads nothing from the kernel, so the
    /// queue stays near the mark and the peer's own sends stop (TCP backpressure reaches it).
    /// Reading resumes, with the lines already buffered, once the peer drains the replies.
    @Test func outputOverHighWaterStopsInputUntilDrained() throws {
        let (loop, conn, client) = try smallBufferedConnection()
        defer { close(client) }
        conn.outputHighWater = 32 * 1024
        conn.outputLowWater = 8 * 1024
        let rec = Recorder()
        rec.consume = false
        let reply = [UInt8](repeating: UInt8(ascii: "x"), count: 198) + [13, 10]
        var lines = 0
        var maxPending = 0
        rec.onReadable = { c in
            // A delegate that, like POP3Connection.pump, handles every complete line it is shown.
            while c.takeLine() != nil {
                lines += 1
                c.write(reply)
                maxPending = max(maxPending, c.pendingOutputBytes)
            }
        }
        conn.delegate = rec
        // At most 2 MiB of commands (without the throttle: 67 MB of replies queued).
        let flooder = Flooder(fd: client, line: "CAPA\r\n", limit: 2 << 20)
        var stalled = 0
        // Flood until the peer's sends stop being accepted for 50 consecutive polls (bounded).
        let ok = try runLoop(loop, timeoutSeconds: 20) {
            stalled = flooder.pour() == 0 ? stalled + 1 : 0
            return stalled >= 50
        }
        let sent = flooder.sent
        #expect(ok)
        #expect(sent < 1 << 20, "the peer could send \(sent) bytes: no backpressure")
        #expect(conn.isOutputThrottled)
        #expect(maxPending <= conn.outputHighWater + reply.count)
        let handledWhileStalled = lines
        #expect(handledWhileStalled * 6 < sent)  // lines remain unhandled, waiting in buffers
        var waited = false
        loop.scheduleTimer(after: 50_000_000) { waited = true }
        try runLoop(loop) { waited }
        #expect(lines == handledWhileStalled)  // nothing more shown while throttled

        // The peer reads: the throttle lifts and the buffered lines are handled.
        var drained = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        let resumed = try runLoop(loop, timeoutSeconds: 20) {
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n <= 0 { break }
                drained += n
            }
            return lines * 6 >= sent
        }
        #expect(resumed)
        #expect(lines * 6 == sent)
        conn.close(flushFirst: false)
    }

    /// Before login pop3d sets `maxBlockedOutputBytes` (Dovecot: 4 KiB): a peer that never
    /// reads is closed as soon as the kernel refuses output beyond it...
    @Test func blockedOutputOverTheLimitCloses() throws {
        let (loop, conn, client) = try smallBufferedConnection()
        defer { close(client) }
        conn.maxBlockedOutputBytes = 4096
        let rec = Recorder()
        rec.consume = false
        let reply = [UInt8](repeating: UInt8(ascii: "y"), count: 98) + [13, 10]
        rec.onReadable = { c in
            while c.takeLine() != nil { c.write(reply) }
        }
        conn.delegate = rec
        let flooder = Flooder(fd: client, line: "NOOP\r\n", limit: 2 << 20)
        let closed = try runLoop(loop, timeoutSeconds: 10) {
            _ = flooder.pour()
            return rec.closedReason != nil
        }
        #expect(closed)
        #expect(rec.closedReason == .outputLimitExceeded)
    }

    /// ...but a peer that reads its replies is never closed, even when one turn pipelines far
    /// more than the limit: the limit counts only what the kernel refused.
    @Test func pipelinedRepliesToAReadingPeerAreNotTheLimit() throws {
        let loop = try EventLoop()
        let (server, client) = try socketPair()
        defer { close(client) }
        let conn = try Connection(fd: server, peer: try loopback(1), loop: loop)
        conn.maxBlockedOutputBytes = 4096
        let rec = Recorder()
        rec.consume = false
        let reply = [UInt8](repeating: UInt8(ascii: "z"), count: 498) + [13, 10]
        var lines = 0
        rec.onReadable = { c in
            while c.takeLine() != nil {
                lines += 1
                c.write(reply)
            }
        }
        conn.delegate = rec
        let batch = Array(String(repeating: "CAPA\r\n", count: 100).utf8)  // 50 KB of replies
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        for _ in 0..<5 {
            #expect(batch.withUnsafeBytes { write(client, $0.baseAddress, $0.count) } == batch.count)
            let target = received + 100 * reply.count
            let got = try runLoop(loop) {
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                    if n <= 0 { break }
                    received += n
                }
                return received >= target
            }
            #expect(got)
        }
        #expect(lines == 500)
        #expect(rec.closedReason == nil)
        conn.close(flushFirst: false)
    }

    /// Chunks beyond the pool go back to malloc and are counted for the heap trim; the pool
    /// itself never holds more than `maxPooledChunks`.
    @Test func freedChunksBeyondThePoolAreReturned() throws {
        let loop = try EventLoop()
        var pairs: [(Connection, Int32)] = []
        let recorder = Recorder()
        for _ in 0..<8 {
            let (server, client) = try socketPair()
            _ = setBufferSizes(server, 4096, 4096)
            let conn = try Connection(fd: server, peer: try loopback(1), loop: loop)
            conn.outputHighWater = 4 << 20
            conn.delegate = recorder
            let block = [UInt8](repeating: 1, count: 64 * 1024)
            for _ in 0..<16 { conn.write(block) }  // 1 MiB each, 64 chunks
            pairs.append((conn, client))
        }
        for (conn, client) in pairs {
            conn.close(flushFirst: false)
            close(client)
        }
        #expect(loop.chunkPool.free.count == OutputQueue.maxPooledChunks)
        #expect(loop.chunkPool.freedSinceTrim == 8 * 64 - OutputQueue.maxPooledChunks)
        var turns = 0
        try runLoop(loop) { turns += 1; return turns > 3 }
        #expect(loop.chunkPool.freedSinceTrim == 0)  // trimmed (4 MiB freed, first trim)
    }

    /// Review of issue 9: malloc_trim walks the heap's free blocks, so on a fragmented heap one
    /// call can take many milliseconds. The next trim waits 100 x the last one's duration, so
    /// trims take at most 1 % of the loop's time: a trim that took 0.5 s blocks trims for 50 s.
    @Test func slowTrimsSpaceOutTheNextOnes() throws {
        let loop = try EventLoop()
        loop.chunkPool.freedSinceTrim = EventLoop.trimAfterFreedOutputBytes / OutputQueue.chunkBytes
        loop.lastTrimDuration = 500_000_000  // the last trim took 0.5 s
        loop.lastTrim = loop.now &- 2_000_000_000  // 2 s ago: past the 1 s minimum, not past 50 s
        loop.trimFreedChunksIfDue()
        #expect(loop.chunkPool.freedSinceTrim > 0, "trimmed again within 100 x the last trim's duration")
        loop.lastTrim = loop.now &- 51_000_000_000  // 51 s ago: past 100 x 0.5 s
        loop.trimFreedChunksIfDue()
        #expect(loop.chunkPool.freedSinceTrim == 0)
        #expect(loop.lastTrimDuration < 500_000_000)  // the new, real duration was recorded
    }
}
