import Glibc
import Reactor

/// A blocking POP3 client for the harness: a TCP socket to 127.0.0.1, optionally switched to
/// TLS after STLS. Every read waits at most `timeoutSeconds` (then throws), so a server that
/// stalls fails the test instead of hanging it.
final class TestClient {
    enum Failure: Error, CustomStringConvertible {
        case timeout(String)
        case closed(String)
        case io(String)
        var description: String {
            switch self {
            case .timeout(let s): "timeout: \(s)"
            case .closed(let s): "connection closed by the server: \(s)"
            case .io(let s): s
            }
        }
    }

    /// Bytes taken from the socket (or TLS) in one read.
    static let readChunkBytes = 64 * 1024

    let fd: Int32
    var timeoutSeconds = 10.0
    /// Received and not consumed yet.
    private var pending: [UInt8] = []
    private var tls: TLSStream?
    private var tlsContext: TLSClientContext?
    private var scratch = [UInt8](repeating: 0, count: TestClient.readChunkBytes)
    private(set) var isClosed = false

    /// Connects (blocking) to 127.0.0.1:port. `receiveBufferBytes` sets SO_RCVBUF before
    /// connecting, so the TCP window stays small: a slow reader.
    init(port: UInt16, receiveBufferBytes: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure.io("socket: errno \(errno)") }
        if var size = receiveBufferBytes {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw Failure.io("connect 127.0.0.1:\(port): errno \(e)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close() }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        tls = nil
        Glibc.close(fd)
    }

    /// Closes with a reset (SO_LINGER 0): the server sees ECONNRESET/EPOLLERR at once,
    /// whatever it is waiting for.
    func reset() {
        guard !isClosed else { return }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close()
    }

    // MARK: writing

    /// Sends `text` as is (give the CRLFs); several commands in one call go out in one write
    /// when the socket has room (pipelining).
    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        let deadline = Self.deadline(timeoutSeconds)
        while sent < bytes.count {
            if let tls {
                let result = bytes.withUnsafeBytes { tls.write(UnsafeRawBufferPointer(rebasing: $0[sent...])) }
                switch result {
                case .bytes(let n): sent += n
                case .wantRead: try wait(for: POLLIN, until: deadline, "TLS write")
                case .wantWrite: try wait(for: POLLOUT, until: deadline, "TLS write")
                case .closed: throw Failure.closed("TLS write")
                case .failed(let why): throw Failure.io("TLS write: \(why)")
                }
            } else {
                let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress.map { $0 + sent }, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if n > 0 {
                    sent += n
                } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                    try wait(for: POLLOUT, until: deadline, "write")
                } else {
                    throw Failure.io("write: errno \(errno)")
                }
            }
        }
    }

    // MARK: reading

    /// The next line, without its CRLF.
    func line() throws -> String {
        let deadline = Self.deadline(timeoutSeconds)
        var searched = 0
        while true {
            if let lf = pending[searched...].firstIndex(of: 10) {
                var end = lf
                if end > 0 && pending[end - 1] == 13 { end -= 1 }
                let text = String(decoding: pending[0..<end], as: UTF8.self)
                pending.removeFirst(lf + 1)
                return text
            }
            searched = pending.count
            guard try fill(until: deadline) else {
                throw Failure.closed("waiting for a line; got \(String(decoding: pending, as: UTF8.self).debugDescription)")
            }
        }
    }

    /// Sends `line` + CRLF and returns the one-line reply.
    func command(_ line: String) throws -> String {
        try send(line + "\r\n")
        return try self.line()
    }

    /// The lines of a multi-line reply after its status line, up to (not including) the
    /// terminating ".", still dot-stuffed.
    func multiline() throws -> [String] {
        var lines: [String] = []
        while true {
            let l = try line()
            if l == "." { return lines }
            lines.append(l)
        }
    }

    /// The raw octets of a multi-line reply body up to and including the CRLF before the
    /// terminating ".\r\n" (still dot-stuffed). For large messages: no per-line work.
    /// `chunkBytes` caps each read, to read slowly.
    func rawBody(chunkBytes: Int = TestClient.readChunkBytes) throws -> [UInt8] {
        let deadline = Self.deadline(timeoutSeconds)
        var body: [UInt8] = []
        swap(&body, &pending)
        // The body may be empty: then the terminator follows the status line at once.
        if body.starts(with: Array(".\r\n".utf8)) {
            pending = Array(body.dropFirst(3))
            return []
        }
        var searchFrom = 0
        let terminator: [UInt8] = Array("\r\n.\r\n".utf8)
        while true {
            if body.count >= terminator.count {
                var i = max(0, searchFrom - terminator.count)
                let last = body.count - terminator.count
                while i <= last {
                    if body[i] == 13 && body[i + 1] == 10 && body[i + 2] == 46 && body[i + 3] == 13 && body[i + 4] == 10 {
                        pending = Array(body[(i + terminator.count)...])
                        body.removeSubrange((i + 2)...)
                        return body
                    }
                    i += 1
                }
            }
            searchFrom = body.count
            guard try fill(until: deadline, maxBytes: chunkBytes, into: &body) else {
                throw Failure.closed("in a multi-line body after \(body.count) octets")
            }
        }
    }

    /// Reads exactly `count` more octets (for a slow reader that stops half way).
    func read(exactly count: Int, chunkBytes: Int = TestClient.readChunkBytes) throws -> [UInt8] {
        let deadline = Self.deadline(timeoutSeconds)
        while pending.count < count {
            guard try fill(until: deadline, maxBytes: min(chunkBytes, count - pending.count)) else {
                throw Failure.closed("after \(pending.count) of \(count) octets")
            }
        }
        defer { pending.removeFirst(count) }
        return Array(pending[0..<count])
    }

    /// Waits for the server to close the connection; true when it did within the timeout.
    /// Octets that arrive meanwhile are kept (see `leftover`).
    func waitForClose(timeoutSeconds: Double? = nil) throws -> Bool {
        let deadline = Self.deadline(timeoutSeconds ?? self.timeoutSeconds)
        do {
            while try fill(until: deadline) {}
            return true
        } catch Failure.timeout {
            return false
        } catch Failure.io(let why) where why.contains("errno \(ECONNRESET)") {
            return true
        }
    }

    /// What was received and not consumed.
    var leftover: String { String(decoding: pending, as: UTF8.self) }

    // MARK: STLS

    /// After the server's "+OK" to STLS: runs the client side of the handshake (RFC 2595 §4).
    func startTLS(serverName: String = "mail.example.org") throws {
        guard pending.isEmpty else {
            throw Failure.io("octets after the STLS reply, before the handshake: \(leftover.debugDescription)")
        }
        let context = try TLSClientContext()
        let stream = try TLSStream(client: context, fd: fd, serverName: serverName)
        let deadline = Self.deadline(timeoutSeconds)
        while true {
            switch stream.handshake() {
            case .done:
                tlsContext = context
                tls = stream
                return
            case .wantRead: try wait(for: POLLIN, until: deadline, "TLS handshake")
            case .wantWrite: try wait(for: POLLOUT, until: deadline, "TLS handshake")
            case .failed(let why): throw Failure.io("TLS handshake: \(why)")
            }
        }
    }

    // MARK: plumbing

    private func fill(until deadline: UInt64, maxBytes: Int = TestClient.readChunkBytes) throws -> Bool {
        var into: [UInt8] = []
        swap(&into, &pending)
        defer { swap(&into, &pending) }
        return try fill(until: deadline, maxBytes: maxBytes, into: &into)
    }

    /// One read into `out`; false at end of stream. Waits (poll) until something arrives.
    private func fill(until deadline: UInt64, maxBytes: Int, into out: inout [UInt8]) throws -> Bool {
        let limit = max(1, min(maxBytes, scratch.count))
        while true {
            if let tls {
                let result = scratch.withUnsafeMutableBytes { tls.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<limit])) }
                switch result {
                case .bytes(let n):
                    out.append(contentsOf: scratch[0..<n])
                    return true
                case .wantRead: try wait(for: POLLIN, until: deadline, "TLS read")
                case .wantWrite: try wait(for: POLLOUT, until: deadline, "TLS read")
                case .closed: return false
                case .failed(let why): throw Failure.io("TLS read: \(why)")
                }
            } else {
                let n = scratch.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, limit) }
                if n > 0 {
                    out.append(contentsOf: scratch[0..<n])
                    return true
                }
                if n == 0 { return false }
                guard errno == EAGAIN || errno == EINTR else { throw Failure.io("read: errno \(errno)") }
                try wait(for: POLLIN, until: deadline, "read")
            }
        }
    }

    private func wait(for events: Int32, until deadline: UInt64, _ what: String) throws {
        let now = Self.monotonicNanoseconds()
        guard now < deadline else { throw Failure.timeout("\(what) after \(timeoutSeconds) s") }
        var pfd = pollfd(fd: fd, events: Int16(events), revents: 0)
        _ = poll(&pfd, 1, Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
    }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func deadline(_ seconds: Double) -> UInt64 {
        monotonicNanoseconds() + UInt64(seconds * 1e9)
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeoutSeconds` pass (the
/// harness's `wait_for`); returns whether it held.
@discardableResult
func waitFor(timeoutSeconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = TestClient.deadline(timeoutSeconds)
    while true {
        if try condition() { return true }
        if TestClient.monotonicNanoseconds() >= deadline { return false }
        var pause = timespec(tv_sec: 0, tv_nsec: 5_000_000)
        nanosleep(&pause, nil)
    }
}
