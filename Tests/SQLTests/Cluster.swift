import Testing
import Glibc

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A throwaway PostgreSQL cluster: `initdb` into a fresh folder under /tmp, the server
/// listening only on a Unix socket in that folder (`-k dir -h ''`), run as `postgres` when
/// the tests run as root (initdb refuses root), stopped by its PID and removed by `stop()`.
/// Never the system's cluster. Debian's binaries: /usr/lib/postgresql/<major>/bin.
final class Cluster {
    let dir: String
    let user = "pop3test"
    private var pid: pid_t = 0

    static func binDirectory() throws -> String {
        for major in ["17", "16", "15", "14", "13"] {
            let dir = "/usr/lib/postgresql/\(major)/bin"
            if access(dir + "/initdb", X_OK) == 0 { return dir }
        }
        throw Failure("no PostgreSQL server binaries (apt-get install postgresql)")
    }

    init() throws {
        let bin = try Self.binDirectory()
        var template = Array("/tmp/pop3d-pg.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Failure("mkdtemp: errno \(errno)") }
        dir = String(cString: made)
        if getuid() == 0 {
            guard let pw = getpwnam("postgres") else { throw Failure("no postgres user to run initdb as") }
            guard chown(dir, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else { throw Failure("chown: errno \(errno)") }
        }
        try shell("\(bin)/initdb -D \(dir)/data -U \(user) -A trust --no-sync -E UTF8 > \(dir)/initdb.log 2>&1")
        try startServer()
    }

    /// Starts the postmaster on the cluster's data (again, after `stopServer()`); waits until
    /// it accepts connections (`pg_ctl -w`).
    func startServer() throws {
        guard pid == 0 else { return }
        let bin = try Self.binDirectory()
        try shell("\(bin)/pg_ctl -D \(dir)/data -o \"-k \(dir) -h ''\" -l \(dir)/server.log -w start > /dev/null 2>&1")
        let pidFile = try Self.read("\(dir)/data/postmaster.pid")
        guard let first = pidFile.split(separator: "\n").first, let number = pid_t(first) else {
            throw Failure("no PID in postmaster.pid")
        }
        pid = number
    }

    /// Fast shutdown (SIGINT) of the postmaster by PID, keeping the data for `startServer()`.
    /// Returns when the postmaster has exited (at most 20 s); its clients' connections are
    /// closed by the server and its socket file is gone.
    func stopServer() {
        guard pid > 0 else { return }
        kill(pid, SIGINT)
        var waited = 0
        while Self.isRunning(pid) && waited < 2000 {
            usleep(10_000)
            waited += 1
        }
        if Self.isRunning(pid) {
            // Not silent: a postmaster that ignores SIGINT for 20 s is a problem worth seeing.
            Issue.record("postmaster \(pid) still running 20 s after SIGINT")
        }
        pid = 0
    }

    /// Whether `pid` exists and has not exited: the postmaster is reparented to PID 1, which
    /// may reap it a second or two after it exited (a zombie still answers kill(pid, 0)).
    static func isRunning(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        let stat: String
        do {
            stat = try read("/proc/\(pid)/stat")
        } catch {
            // Gone between the two looks (reaped): not running. Still there: running.
            return kill(pid, 0) == 0
        }
        guard let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state != "Z"
    }

    /// `pg_terminate_backend` on every client backend of `user` except psql's own: the
    /// server closes those connections, as an administrator or a restart would.
    func terminateClientBackends() throws {
        try psql("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE usename = '\(user)' AND backend_type = 'client backend' AND pid <> pg_backend_pid();
            """)
    }

    /// `host=<dir> dbname=postgres user=pop3test`.
    var conninfo: String { "host=\(dir) dbname=postgres user=\(user)" }

    /// Runs SQL through psql (stops at the first error).
    func psql(_ sql: String) throws {
        let bin = try Self.binDirectory()
        let file = "\(dir)/script.sql"
        try Self.write(file, sql)
        try shell("\(bin)/psql -X -q -v ON_ERROR_STOP=1 -h \(dir) -U \(user) -d postgres -f \(file) > /dev/null 2>&1")
    }

    /// Runs one statement through psql and returns its unaligned, tuples-only output
    /// (`psql -tA`), trimmed.
    func psqlOutput(_ sql: String) throws -> String {
        let bin = try Self.binDirectory()
        let file = "\(dir)/script.sql", out = "\(dir)/output.txt"
        try Self.write(file, sql)
        try shell("\(bin)/psql -X -q -tA -v ON_ERROR_STOP=1 -h \(dir) -U \(user) -d postgres -f \(file) > \(out) 2>/dev/null")
        var text = Substring(try Self.read(out))
        while let last = text.last, last == "\n" || last == " " { text.removeLast() }
        return String(text)
    }

    /// Fast shutdown (SIGINT) by PID, waits up to 20 s for the postmaster to exit, removes the folder.
    func stop() {
        stopServer()
        _ = Self.run(["/bin/rm", "-rf", dir])
    }

    private func shell(_ command: String) throws {
        let args = getuid() == 0
            ? ["/usr/sbin/runuser", "-u", "postgres", "--", "/bin/sh", "-c", command]
            : ["/bin/sh", "-c", command]
        let status = Self.run(args)
        guard status == 0 else { throw Failure("\(command): exit \(status)") }
    }

    static func run(_ args: [String]) -> Int32 {
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var child: pid_t = 0
        guard posix_spawn(&child, args[0], nil, nil, &argv, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
    }

    static func read(_ path: String) throws -> String {
        guard let file = fopen(path, "r") else { throw Failure("open \(path): errno \(errno)") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func write(_ path: String, _ text: String) throws {
        guard let file = fopen(path, "w") else { throw Failure("create \(path): errno \(errno)") }
        defer { fclose(file) }
        let bytes = Array(text.utf8)
        guard fwrite(bytes, 1, bytes.count, file) == bytes.count else { throw Failure("write \(path)") }
        if getuid() == 0, let pw = getpwnam("postgres") { chown(path, pw.pointee.pw_uid, pw.pointee.pw_gid) }
    }
}
