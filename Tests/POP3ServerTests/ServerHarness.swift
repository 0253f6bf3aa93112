// DESIGN: the glue's in-process test harness.
//
// What it is for: `POP3Connection` and `POP3Service` (the glue between the reactor, the pure
// `Session`, the Auth worker pools and the Maildrop) were reachable only through the pop3d
// binary and pytest. `ServerHarness` starts the real thing inside the test process, the way
// mini-redis's tests/server.rs does: a `POP3Service` on its own `EventLoop`, listening on
// 127.0.0.1:0, with a temporary Maildir root and a passwd-file written by the test. Tests talk
// to it through real sockets with `TestClient` (blocking, with deadlines; STLS included), so
// what they see is what a client sees, and they can still look inside: `onLoop` runs a closure
// on the loop thread (counts, `drain()`, timers) and `logs` holds every line the server logged.
//
// Threading: the loop, the listener and the service are created, used and destroyed on the
// harness's own thread, which runs `loop.run()`. The test thread never touches them; it hands
// closures to the loop through an eventfd `Waker` and a mutex-protected inbox and waits for the
// answer with a deadline. `stop()` (also run by `deinit`) closes every session, stops the loop,
// joins the thread and deletes the temporary folder; each test builds its own harness.
import Dispatch
import Glibc
import Logging
import Reactor
import Synchronization
import TestSupport
@testable import POP3Server

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Everything that lives on the loop thread. Only that thread touches it.
final class LoopSide {
    let loop: EventLoop
    let service: POP3Service
    let listener: Listener
    /// `service.onDrained` has fired.
    var drained = false

    init(loop: EventLoop, service: POP3Service, listener: Listener) {
        self.loop = loop
        self.service = service
        self.listener = listener
    }
}

typealias LoopJob = @Sendable (LoopSide) -> Void

/// Closures waiting for a harness's loop thread (filled by the test thread, emptied by the
/// Waker's body); `Side` is what lives on that thread (`LoopSide`, `MetricsHarness.Side`).
final class Inbox<Side>: Sendable {
    typealias Job = @Sendable (Side) -> Void
    let jobs = Mutex<[Job]>([])

    func post(_ job: @escaping Job) { jobs.withLock { $0.append(job) } }

    func takeAll() -> [Job] {
        jobs.withLock { jobs in
            defer { jobs.removeAll() }
            return jobs
        }
    }
}

extension Inbox {
    /// Runs `body` on the loop thread behind `waker` and returns its result; throws when the
    /// harness is stopped (no waker) or the loop does not answer within
    /// `ServerHarness.loopAnswerSeconds` (a stalled or dead loop).
    func ask<T: Sendable>(_ waker: Waker?, _ body: @escaping @Sendable (Side) -> T) throws -> T {
        guard let waker else { throw HarnessError("harness stopped") }
        let answer = Handoff<T>()
        post { side in answer.put(body(side)) }
        waker.wake()
        return try answer.take(timeoutSeconds: ServerHarness.loopAnswerSeconds, what: "onLoop")
    }
}

/// One value handed from the loop thread to the test thread.
final class Handoff<T: Sendable>: Sendable {
    let value = Mutex<T?>(nil)
    let ready = DispatchSemaphore(value: 0)

    func put(_ v: T) {
        value.withLock { $0 = v }
        ready.signal()
    }

    func take(timeoutSeconds: Double, what: String) throws -> T {
        guard ready.wait(timeout: .now() + timeoutSeconds) == .success,
              let v = value.withLock({ $0 })
        else { throw HarnessError("\(what): no answer from the loop thread within \(timeoutSeconds) s") }
        return v
    }
}

/// A temporary folder: passwd-file, Maildirs, certificates.
struct TempRoot {
    let path: String

    init() throws {
        var template = Array("/tmp/pop3d-glue-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ $0.baseAddress.flatMap { mkdtemp($0) } }) else {
            throw HarnessError("mkdtemp: errno \(errno)")
        }
        path = String(cString: made)
    }

    func makeDirectory(_ relative: String) throws {
        let full = path + "/" + relative
        guard mkdir(full, 0o700) == 0 || errno == EEXIST else { throw HarnessError("mkdir \(full): errno \(errno)") }
    }

    func write(_ relative: String, _ bytes: [UInt8]) throws {
        let full = path + "/" + relative
        let fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw HarnessError("open \(full): errno \(errno)") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress.map { $0 + done }, $0.count - done) }
            guard n > 0 else { throw HarnessError("write \(full): errno \(errno)") }
            done += n
        }
    }

    /// Deletes the folder and everything below it (no symlinks are followed).
    func remove() { TempDirectory.removeTree(path) }
}

/// A `POP3Service` on its own loop thread, listening on 127.0.0.1:<port>.
final class ServerHarness {
    /// Users written to the passwd-file: name and `{SCHEME}secret`.
    struct User {
        let name: String
        let secret: String
        static func plain(_ name: String, _ password: String) -> User { User(name: name, secret: "{PLAIN}\(password)") }
    }

    /// Longest a test waits for the loop thread to run a closure.
    static let loopAnswerSeconds = 10.0

    let root: TempRoot
    let port: UInt16
    let logs = LogRecorder()
    private let inbox = Inbox<LoopSide>()
    private var waker: Waker?
    private var thread: pthread_t?

    /// Writes the passwd-file and an empty Maildir per user, lets `configure` adjust the
    /// configuration (mail and passwd_file are set already), and starts the loop thread.
    init(users: [User] = [.plain("alice", "secret"), .plain("bob", "secret")],
         configure: (inout ServerConfig, TempRoot) throws -> Void = { _, _ in }) throws {
        signal(SIGPIPE, SIG_IGN)  // as ServerRunner does: a write to a closed peer is EPIPE
        root = try TempRoot()
        do {
            var passwd = ""
            for user in users {
                passwd += "\(user.name):\(user.secret):1000:1000::\(root.path)/\(user.name)::\n"
                for dir in [user.name, "\(user.name)/Maildir", "\(user.name)/Maildir/new",
                            "\(user.name)/Maildir/cur", "\(user.name)/Maildir/tmp"] {
                    try root.makeDirectory(dir)
                }
            }
            try root.write("passwd", Array(passwd.utf8))
            var config = ServerConfig()
            config.passwdFile = root.path + "/passwd"
            config.mail = "maildir:\(root.path)/%u/Maildir"
            config.idleTimeoutSeconds = 600
            try configure(&config, root)

            let started = Handoff<StartResult>()
            let context = ThreadContext(config: config, logs: logs, inbox: inbox, started: started)
            (thread, port, waker) = try startLoopThread(context, started: started, what: "server")
        } catch {
            root.remove()
            throw error
        }
    }

    deinit { stop() }

    /// Runs `body` on the loop thread and returns its result; throws when the loop does not
    /// answer within `loopAnswerSeconds` (a stalled or dead loop).
    @discardableResult
    func onLoop<T: Sendable>(_ body: @escaping @Sendable (LoopSide) -> T) throws -> T {
        try inbox.ask(waker, body)
    }

    /// The service's live counts, read on the loop thread.
    func counts() throws -> Counts {
        try onLoop { side in
            Counts(connections: side.service.connectionCount, unauthenticated: side.service.unauthenticatedCount,
                   loggedIn: side.service.loggedInCount)
        }
    }

    struct Counts: Sendable, Equatable, CustomStringConvertible {
        let connections: Int
        let unauthenticated: Int
        let loggedIn: Int
        static let zero = Counts(connections: 0, unauthenticated: 0, loggedIn: 0)
        var description: String { "connections \(connections), unauthenticated \(unauthenticated), logged in \(loggedIn)" }
    }

    /// A client connected to this server (greeting not read yet).
    func client(receiveBufferBytes: Int32? = nil) throws -> TestClient {
        try TestClient(port: port, receiveBufferBytes: receiveBufferBytes)
    }

    /// A client logged in as alice, in TRANSACTION state.
    /// - Throws: `HarnessError` naming the step when the greeting, USER or PASS is not +OK.
    func aliceLoggedIn() throws -> TestClient {
        let c = try client()
        func check(_ step: String, _ reply: String) throws {
            guard reply.hasPrefix("+OK") else { throw HarnessError("login as alice: \(step) answered \(reply)") }
        }
        try check("greeting", try c.line())
        try check("USER", try c.command("USER alice"))
        try check("PASS", try c.command("PASS secret"))
        return c
    }

    /// Delivers `bytes` into `user`'s Maildir/new under a fresh unique name, as an MTA does
    /// (tmp/ first, then rename).
    /// Delivers a message into `user`'s new/ and returns the file's path.
    @discardableResult
    func deliver(_ user: String, _ bytes: [UInt8]) throws -> String {
        deliveries += 1
        let name = "\(1_700_000_000 + deliveries).M\(deliveries)P\(getpid()).harness"
        try root.write("\(user)/Maildir/tmp/\(name)", bytes)
        let from = "\(root.path)/\(user)/Maildir/tmp/\(name)"
        let to = "\(root.path)/\(user)/Maildir/new/\(name)"
        guard rename(from, to) == 0 else { throw HarnessError("rename into new/: errno \(errno)") }
        return to
    }
    private var deliveries = 0

    /// Closes every session, stops the loop, joins its thread and deletes the folder.
    func stop() {
        guard let tid = thread, let waker else { return }
        inbox.post { side in
            side.service.closeAll()
            side.loop.stop()
        }
        waker.wake()
        pthread_join(tid, nil)
        thread = nil
        self.waker = nil
        root.remove()
    }
}

enum StartResult: Sendable {
    case running(port: UInt16, waker: Waker)
    case failed(String)
}

/// What the loop thread starts from; retained by the thread until it returns.
/// What a harness runs on its own loop thread (`startLoopThread`).
protocol LoopThreadBody: AnyObject, Sendable {
    func run()
}

/// Runs `body.run()` on a new thread and waits (at most `ServerHarness.loopAnswerSeconds`)
/// for the start result it puts into `started`: the thread, the port it listens on, and the
/// waker of its loop. Throws when the thread cannot start or its loop did not.
func startLoopThread(_ body: some LoopThreadBody, started: Handoff<StartResult>,
                     what: String) throws -> (pthread_t, UInt16, Waker) {
    let box = Unmanaged.passRetained(body as AnyObject).toOpaque()
    var tid = pthread_t()
    guard pthread_create(&tid, nil, { raw in
        guard let raw else { return nil }
        (Unmanaged<AnyObject>.fromOpaque(raw).takeRetainedValue() as? any LoopThreadBody)?.run()
        return nil
    }, box) == 0 else {
        Unmanaged<AnyObject>.fromOpaque(box).release()
        throw HarnessError("pthread_create failed")
    }
    switch try started.take(timeoutSeconds: ServerHarness.loopAnswerSeconds, what: "\(what) start") {
    case .running(let port, let waker):
        return (tid, port, waker)
    case .failed(let why):
        pthread_join(tid, nil)
        throw HarnessError("\(what) did not start: \(why)")
    }
}

private final class ThreadContext: LoopThreadBody {
    let config: ServerConfig
    let logs: LogRecorder
    let inbox: Inbox<LoopSide>
    let started: Handoff<StartResult>

    init(config: ServerConfig, logs: LogRecorder, inbox: Inbox<LoopSide>, started: Handoff<StartResult>) {
        self.config = config
        self.logs = logs
        self.inbox = inbox
        self.started = started
    }

    func run() {
        runHarnessLoop(logs: logs, inbox: inbox, started: started, listenerName: nil) { loop, listener, logger in
            let service = try POP3Service(config: config, loop: loop, logger: logger)
            let side = LoopSide(loop: loop, service: service, listener: listener)
            try loop.addListener(listener) { [unowned service] socket in
                service.accept(socket, implicitTLS: false)
            }
            service.onDrained = { [unowned side] in side.drained = true }
            return side
        } tearDown: { side in
            side.loop.removeListener(side.listener)
            side.listener.close()
        }
    }
}

/// What lives on a harness's loop thread: at least the loop.
protocol HarnessSide: AnyObject {
    var loop: EventLoop { get }
}

extension LoopSide: HarnessSide {}

/// The body of a harness's loop thread (`ServerHarness`, `MetricsHarness`): a loop logging into
/// `logs` and a listener on 127.0.0.1:0, the side `setUp` builds on them, the inbox's jobs run
/// on every wake-up, the start result handed to the test thread, the loop run until stopped,
/// then `tearDown`.
func runHarnessLoop<Side: HarnessSide>(
    logs: LogRecorder, inbox: Inbox<Side>, started: Handoff<StartResult>, listenerName: String?,
    setUp: (EventLoop, Listener, Logger) throws -> Side, tearDown: (Side) -> Void = { _ in }
) {
    let logger = Logger(label: "pop3d.test") { _ in RecordingLogHandler(recorder: logs) }
    let side: Side
    do {
        let loop = try EventLoop(logger: logger)
        guard let any = SocketAddress(ip: "127.0.0.1", port: 0) else { throw HarnessError("address") }
        let listener = try Listener(bind: any, name: listenerName)
        guard let port = listener.address?.port else { throw HarnessError("listener has no address") }
        side = try setUp(loop, listener, logger)
        let waker = try loop.makeWaker { [unowned side] in
            for job in inbox.takeAll() { job(side) }
        }
        started.put(.running(port: port, waker: waker))
    } catch {
        started.put(.failed("\(error)"))
        return
    }
    do {
        try side.loop.run()
    } catch {
        logs.append("error harness: loop.run threw \(error)")
    }
    tearDown(side)
}
