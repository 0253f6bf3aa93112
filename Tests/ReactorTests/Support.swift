import CShim
import Glibc
import SystemCalls
@testable import Reactor

/// A delegate recording everything, with optional hooks.
final class Recorder: ConnectionDelegate {
    var received: [UInt8] = []
    var readableCalls = 0
    var writableCalls = 0
    var closedReason: CloseReason?
    var onReadable: ((Connection) -> Void)?
    var onWritable: ((Connection) -> Void)?
    var onTimeout: ((Connection) -> Void)?
    var onClosed: ((Connection, CloseReason) -> Void)?
    /// When false, readable callbacks consume nothing (the bytes stay buffered).
    var consume = true

    func connectionReadable(_ connection: Connection) {
        readableCalls += 1
        if consume {
            connection.withInput { bytes in
                received.append(contentsOf: bytes)
                return bytes.count
            }
        }
        onReadable?(connection)
    }

    func connectionWritable(_ connection: Connection) {
        writableCalls += 1
        onWritable?(connection)
    }

    func connectionWillTimeOut(_ connection: Connection) {
        onTimeout?(connection)
    }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        closedReason = reason
        onClosed?(connection, reason)
        // A closed connection calls its delegate no more. The hooks usually capture this
        // recorder (or what owns it): dropping them breaks that cycle, which LeakSanitizer
        // reports at exit (`make asan`).
        onReadable = nil
        onWritable = nil
        onTimeout = nil
        onClosed = nil
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
}

/// A connected nonblocking AF_UNIX stream pair.
func socketPair() throws -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    try syscallBlocking("socketpair") { socketpair(AF_UNIX, Socket.nonblockingStream, 0, &fds) }
    return (fds[0], fds[1])
}

/// A `Connection` on one end of a fresh `socketPair()`, on `loop`, with a `Recorder` as its
/// delegate: where most connection tests start. The other end, `peer`, is the test's to
/// write, read and close.
func recordedConnection(on loop: EventLoop, port: UInt16 = 1) throws -> (conn: Connection, rec: Recorder, peer: Int32) {
    let (fd, peer) = try socketPair()
    let conn: Connection
    do {
        conn = try Connection(fd: fd, peer: try loopback(port), loop: loop)
    } catch {
        close(peer)
        throw error
    }
    let rec = Recorder()
    conn.delegate = rec
    return (conn, rec, peer)
}

/// Shrinks SO_SNDBUF/SO_RCVBUF (0 leaves one as it is), to provoke EAGAIN quickly; 0 or -1.
func setBufferSizes(_ fd: Int32, _ sendBytes: Int32, _ receiveBytes: Int32) -> Int32 {
    if sendBytes > 0 && Socket.setOption(fd, level: SOL_SOCKET, name: SO_SNDBUF, value: sendBytes) != 0 { return -1 }
    if receiveBytes > 0 && Socket.setOption(fd, level: SOL_SOCKET, name: SO_RCVBUF, value: receiveBytes) != 0 { return -1 }
    return 0
}

func loopback(_ port: UInt16 = 0) throws -> SocketAddress {
    guard let address = SocketAddress(ip: "127.0.0.1", port: port) else { throw TestFailure(description: "address") }
    return address
}

/// Runs the loop until condition holds (polled every millisecond) or the deadline passes.
/// Returns true when the condition was met.
@discardableResult
func runLoop(_ loop: EventLoop, timeoutSeconds: Double = 10, until condition: @escaping () -> Bool) throws -> Bool {
    var met = false
    let deadline = cshim_monotonic_ns() + UInt64(timeoutSeconds * 1e9)
    var timer: TimerID?
    func check() {
        if condition() {
            met = true
            loop.stop()
        } else if cshim_monotonic_ns() >= deadline {
            loop.stop()
        } else {
            timer = loop.scheduleTimer(after: 1_000_000) { check() }
        }
    }
    check()
    if !met { try loop.run() }
    if let timer { loop.cancelTimer(timer) }
    return met
}

/// Blocking read of exactly n bytes from a nonblocking fd, polling with a deadline.
func readExactly(_ fd: Int32, _ n: Int, timeoutSeconds: Double = 5) -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    let deadline = cshim_monotonic_ns() + UInt64(timeoutSeconds * 1e9)
    while out.count < n && cshim_monotonic_ns() < deadline {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        _ = poll(&pfd, 1, 50)
        let r = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, n - out.count)) }
        if r > 0 { out.append(contentsOf: buffer[0..<r]) } else if r == 0 { break }
    }
    return out
}

func threadCPUNanoseconds() -> UInt64 {
    var usage = rusage()
    _ = getrusage(1, &usage)  // RUSAGE_THREAD: only the loop thread, not parallel tests
    let user = UInt64(usage.ru_utime.tv_sec) * 1_000_000_000 + UInt64(usage.ru_utime.tv_usec) * 1000
    let system = UInt64(usage.ru_stime.tv_sec) * 1_000_000_000 + UInt64(usage.ru_stime.tv_usec) * 1000
    return user + system
}

/// RLIMIT_NOFILE as the type getrlimit takes (Glibc imports the enum constant with another type).
let RLIMIT_NOFILE_RAW = __rlimit_resource_t(7)

extension Connection {
    /// Consumes the first complete line of the buffered input, as a line parser does, and
    /// returns it with its LF; nil (consuming nothing) while no LF is buffered. The tests'
    /// line-consuming delegates share it.
    @discardableResult
    func takeLine() -> [UInt8]? { take { $0.firstIndex(of: 10) } }

    /// Consumes every complete line buffered (through the last LF) at once; nil when none is.
    func takeCompleteLines() -> [UInt8]? { take { $0.lastIndex(of: 10) } }

    private func take(through end: (UnsafeRawBufferPointer) -> Int?) -> [UInt8]? {
        var taken: [UInt8]?
        withInput { bytes in
            guard let lf = end(bytes) else { return 0 }
            taken = Array(bytes[0...lf])
            return lf + 1
        }
        return taken
    }
}
