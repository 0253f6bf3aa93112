import CShim
import Glibc
import Testing
@testable import Reactor

extension ReactorSuite {
    /// RLIMIT_NOFILE lowered so accept4 fails with EMFILE: the listener leaves epoll for the
    /// backoff (no busy loop: the loop thread's CPU time over the pause stays small), and accepts
    /// the waiting connections once descriptors are available again.
    @Test func emfilePausesTheListenerWithoutSpinningAndResumes() throws {
        let loop = try EventLoop()
        let listener = try Listener(bind: try loopback())
        let address = try #require(listener.address)
        var accepted: [Int32] = []
        try loop.addListener(listener) { socket in accepted.append(socket.fd) }

        // Clients connect first (they need descriptors too); the kernel completes the handshakes.
        var clients: [Int32] = []
        for _ in 0..<3 {
            let fd = Socket.tcp(family: AF_INET)
            _ = address.withSockAddr { connect(fd, $0, $1) }
            clients.append(fd)
        }
        defer { for fd in clients { close(fd) } }

        var saved = rlimit()
        #expect(getrlimit(RLIMIT_NOFILE_RAW, &saved) == 0)
        var highest: Int32 = 0
        for fd in 0..<Int32(4096) where fcntl(fd, F_GETFD) != -1 { highest = fd }
        var lowered = saved
        lowered.rlim_cur = rlim_t(highest + 1)
        #expect(setrlimit(RLIMIT_NOFILE_RAW, &lowered) == 0)
        // Fill the holes below the limit so that no descriptor at all is free.
        var fillers: [Int32] = []
        while true {
            let fd = dup(0)
            if fd < 0 { break }
            fillers.append(fd)
        }
        var restored = false
        func restore() {
            guard !restored else { return }
            restored = true
            for fd in fillers { close(fd) }
            var limit = saved
            _ = setrlimit(RLIMIT_NOFILE_RAW, &limit)
        }
        defer { restore() }

        let pauseWindow: UInt64 = 500_000_000
        var cpuAtStart: UInt64 = 0
        var cpuDuringPause: UInt64 = 0
        var windowOver = false
        var pausesInWindow = 0
        cpuAtStart = threadCPUNanoseconds()
        loop.scheduleTimer(after: pauseWindow) {
            cpuDuringPause = threadCPUNanoseconds() - cpuAtStart
            pausesInWindow = loop.acceptPauseCount(listener)
            restore()
            windowOver = true
            loop.stop()
        }
        // No polling timer here: it would add its own wakeups to the measured CPU time.
        try loop.run()
        #expect(windowOver)
        #expect(accepted.isEmpty)
        #expect(pausesInWindow >= 1)
        // A spinning loop would burn ~500 ms here; each 100 ms backoff costs one failed accept.
        #expect(cpuDuringPause < 25_000_000, "CPU during EMFILE pause: \(cpuDuringPause) ns")
        print("EMFILE pause: \(pausesInWindow) pauses, loop thread CPU \(cpuDuringPause / 1000) us over \(pauseWindow / 1_000_000) ms")
        try runLoop(loop) { accepted.count == 3 }
        #expect(accepted.count == 3)
        for fd in accepted { close(fd) }
        loop.removeListener(listener)
        listener.close()
    }

    /// 5,000 concurrent loopback connections, all accepted and served by one loop; the clients
    /// run on the same loop. Each sends a line, gets it echoed with "+OK ", and only when all
    /// 5,000 are open at once do they close.
    @Test func fiveThousandConcurrentLoopbackConnections() throws {
        let total = 5000
        let loop = try EventLoop()
        let listener = try Listener(bind: try loopback(), backlog: 4096)
        let address = try #require(listener.address)

        final class EchoServer: ConnectionDelegate {
            var open = 0, peakOpen = 0, served = 0
            var connections: [UInt64: Connection] = [:]
            func connectionReadable(_ c: Connection) {
                guard let line = c.takeLine() else { return }
                c.write("+OK " as StaticString)
                c.write(line)
                served += 1
            }
            func connectionClosed(_ c: Connection, reason: CloseReason) {
                open -= 1
                connections[c.id] = nil
            }
        }
        final class Client: ConnectionDelegate {
            let expected: [UInt8]
            var got: [UInt8] = []
            var ok = false
            var closed = false
            init(expected: [UInt8]) { self.expected = expected }
            func connectionReadable(_ c: Connection) {
                c.withInput { bytes in got.append(contentsOf: bytes); return bytes.count }
                if got.count >= expected.count { ok = got == expected }
            }
            func connectionClosed(_ c: Connection, reason: CloseReason) { closed = true }
        }
        let server = EchoServer()
        // Unowned: the loop keeps this closure as long as the listener is registered.
        try loop.addListener(listener) { [unowned loop] socket in
            guard let c = try? Connection(accepted: socket, loop: loop) else { return }
            c.delegate = server
            server.connections[c.id] = c
            server.open += 1
            server.peakOpen = max(server.peakOpen, server.open)
        }
        var clients: [(Connection, Client)] = []
        var attempted = 0
        var connectErrors = 0
        // Connect in batches so the accept queue never overflows (SYN retries would take 1 s).
        func connectBatch() {
            let end = min(attempted + 500, total)
            while attempted < end {
                let i = attempted
                attempted += 1
                let line = Array("USER u\(i)\r\n".utf8)
                let client = Client(expected: Array("+OK ".utf8) + line)
                guard let c = try? Connection.connect(to: address, loop: loop) else {
                    connectErrors += 1
                    continue
                }
                c.delegate = client
                c.write(line)
                clients.append((c, client))
            }
            if attempted < total { loop.scheduleTimer(after: 1_000_000) { connectBatch() } }
        }
        let heapBefore = cshim_heap_bytes_in_use()
        connectBatch()
        let start = cshim_monotonic_ns()
        let allServed = try runLoop(loop, timeoutSeconds: 60) {
            connectErrors > 0 || clients.count == total && clients.allSatisfy { $0.1.ok }
        }
        let elapsed = cshim_monotonic_ns() - start
        // Heap per idle connection (server + client side, delegates and test bookkeeping included):
        // output chunks went back to the pool and no input storage is held between lines.
        let heapPerConnection = (Int(cshim_heap_bytes_in_use()) - Int(heapBefore)) / (2 * total)
        // Printed, not asserted: the heap is process-wide and other suites may run in parallel.
        #expect(connectErrors == 0)
        #expect(allServed)
        #expect(server.served == total)
        #expect(server.peakOpen == total)
        print("5000 connections: peak open \(server.peakOpen), served \(server.served) in \(elapsed / 1_000_000) ms, ~\(heapPerConnection) heap bytes per idle connection")
        for (c, _) in clients { c.close(flushFirst: false) }
        try runLoop(loop) { server.open == 0 }
        #expect(server.open == 0)
        listener.close()
    }
}
