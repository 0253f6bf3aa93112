import Glibc
import Reactor

/// A stand-in for a PostgreSQL server that never answers properly, listening on a Unix
/// socket `<dir>/.s.PGSQL.5432` (where libpq looks for `host=<dir> port=5432`), accepted on
/// the test's loop. It records when each connection attempt arrives, so the pool's retry
/// schedule can be measured without a real server; `.closeAtOnce` closes every connection
/// (libpq: "server closed the connection unexpectedly", a failed connect), `.hold` keeps it
/// open without a word (libpq stays in its connecting state until its timeout).
final class FakeServer {
    enum Mode { case closeAtOnce, hold }

    let dir: String
    var mode: Mode
    /// Monotonic seconds of each accepted connection.
    private(set) var accepted: [Double] = []
    private var listener: Int32 = -1
    private var held: [Int32] = []
    private var watch: DescriptorWatch?

    init(loop: EventLoop, mode: Mode) throws {
        self.mode = mode
        var template = Array("/tmp/pop3d-fakepg.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure("mkdtemp: errno \(errno)") }
        dir = String(cString: made)
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard listener >= 0 else { throw Failure("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array((dir + "/.s.PGSQL.5432").utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { throw Failure("socket path too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path)
            raw[path.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(listener, 64) == 0 else { throw Failure("bind/listen: errno \(errno)") }
        watch = try DescriptorWatch(loop: loop, fd: listener, read: true, write: false, label: "fake pg") {
            [unowned self] _, _ in self.acceptAll()
        }
    }

    /// `host=<dir> port=5432 dbname=x user=x`.
    var conninfo: String { "host=\(dir) port=5432 dbname=x user=x" }

    private func acceptAll() {
        while true {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            accepted.append(cshimFreeMonotonicSeconds())
            switch mode {
            case .closeAtOnce: Glibc.close(fd)
            case .hold: held.append(fd)
            }
        }
    }

    /// Stops listening, closes every held connection and removes the folder.
    func close() {
        watch?.cancel()
        watch = nil
        for fd in held { Glibc.close(fd) }
        held = []
        if listener >= 0 { Glibc.close(listener) }
        listener = -1
        unlink(dir + "/.s.PGSQL.5432")
        rmdir(dir)
    }

    deinit { close() }
}
