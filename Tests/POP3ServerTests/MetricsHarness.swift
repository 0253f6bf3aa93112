import Glibc
import Logging
import Reactor
import Synchronization
import TestSupport
@testable import POP3Server

/// A `MetricsEndpoint` on its own loop thread, listening on 127.0.0.1:<port>, the way
/// `ServerHarness` runs a `POP3Service`. Its `render` appends `renders_total N` (N counts the
/// calls) and `padding` octets of comment, so a test sees which render answered which request.
final class MetricsHarness {
    let port: UInt16
    let logs = LogRecorder()
    private let inbox = Inbox<Side>()
    private var waker: Waker?
    private var thread: pthread_t?

    /// Everything on the loop thread.
    final class Side: HarnessSide {
        let loop: EventLoop
        var endpoint: MetricsEndpoint!
        var renders = 0
        init(loop: EventLoop) { self.loop = loop }
    }

    init(limits: MetricsEndpoint.Limits = .init(), padding: Int = 0) throws {
        signal(SIGPIPE, SIG_IGN)
        let started = Handoff<StartResult>()
        let context = MetricsThread(limits: limits, padding: padding, logs: logs, inbox: inbox, started: started)
        (thread, port, waker) = try startLoopThread(context, started: started, what: "metrics endpoint")
    }

    deinit { stop() }

    @discardableResult
    func onLoop<T: Sendable>(_ body: @escaping @Sendable (Side) -> T) throws -> T {
        try inbox.ask(waker, body)
    }

    /// Renders so far.
    func renders() throws -> Int { try onLoop { $0.renders } }

    /// Metrics connections open.
    func connections() throws -> Int { try onLoop { $0.endpoint.connectionCount } }

    func client(receiveBufferBytes: Int32? = nil) throws -> TestClient {
        try TestClient(port: port, receiveBufferBytes: receiveBufferBytes)
    }

    func stop() {
        guard let tid = thread, let waker else { return }
        inbox.post { side in
            side.endpoint.close()
            side.loop.stop()
        }
        waker.wake()
        pthread_join(tid, nil)
        thread = nil
        self.waker = nil
    }
}

private final class MetricsThread: LoopThreadBody {
    let limits: MetricsEndpoint.Limits
    let padding: Int
    let logs: LogRecorder
    let inbox: Inbox<MetricsHarness.Side>
    let started: Handoff<StartResult>

    init(limits: MetricsEndpoint.Limits, padding: Int, logs: LogRecorder, inbox: Inbox<MetricsHarness.Side>, started: Handoff<StartResult>) {
        self.limits = limits
        self.padding = padding
        self.logs = logs
        self.inbox = inbox
        self.started = started
    }

    func run() {
        let limits = self.limits, padding = self.padding
        runHarnessLoop(logs: logs, inbox: inbox, started: started, listenerName: "metrics") { loop, listener, logger in
            let side = MetricsHarness.Side(loop: loop)
            side.endpoint = try MetricsEndpoint(loop: loop, listener: listener, logger: logger, limits: limits) { [unowned side] out in
                side.renders += 1
                out.append(contentsOf: "# HELP renders_total Calls of render.\n# TYPE renders_total counter\n".utf8)
                out.append(contentsOf: "renders_total \(side.renders)\n".utf8)
                if padding > 0 {
                    out.append(contentsOf: "#".utf8)
                    out.append(contentsOf: [UInt8](repeating: UInt8(ascii: "p"), count: padding))
                    out.append(10)
                }
            }
            return side
        }
    }
}
