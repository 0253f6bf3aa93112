import Benchmark
import POP3

/// One whole session's command handling, without I/O: greeting, USER, PASS →
/// `loginFinished(.success)` with a 10-message listing, STAT, LIST, UIDL, RETR
/// of every message through the encoder (an in-memory ~4 KiB message), DELE 1,
/// QUIT → `commitDeletions` → `updateFinished`. One iteration = one session.
func registerSessionBenchmarks() {
    let script = SessionScript()
    Benchmark("Whole session (login, STAT, LIST, UIDL, 10×RETR, DELE, QUIT)") { benchmark in
        var sink = ReusableSink()
        defer { sink.deallocate() }
        var completed = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            if script.run(out: &sink) { completed += 1 }
            sink.flush()
        }
        benchmark.stopMeasurement()
        if completed != benchmark.scaledIterations.count {
            benchmark.error("\(benchmark.scaledIterations.count - completed) sessions did not finish cleanly")
        }
        blackHole(sink.lastByte)
    }
}

/// The client side of the whole-session benchmark: command lines prepared once.
struct SessionScript: Sendable {
    let user = Array("USER bench".utf8)
    let pass = Array("PASS secret".utf8)
    let stat = Array("STAT".utf8)
    let list = Array("LIST".utf8)
    let uidl = Array("UIDL".utf8)
    let retr: [[UInt8]] = (1...10).map { Array("RETR \($0)".utf8) }
    let dele = Array("DELE 1".utf8)
    let quit = Array("QUIT".utf8)
    let listing = Fixtures.listing10
    let message = Fixtures.smallMessage

    /// Runs one session; false if any step answered unexpectedly.
    func run(out: inout ReusableSink) -> Bool {
        var session = Session(config: Fixtures.sessionConfig)
        session.start(out: &out)
        guard case .none = send(user, &session, &out),
            case .authenticate = send(pass, &session, &out),
            case .none = session.loginFinished(.success(listing), out: &out),
            case .none = send(stat, &session, &out),
            case .produce = send(list, &session, &out)
        else { return false }
        while !session.produceMore(out: &out, maxBytes: 16 * 1024) {}
        guard case .produce = send(uidl, &session, &out) else { return false }
        while !session.produceMore(out: &out, maxBytes: 16 * 1024) {}
        for line in retr {
            guard case .openMessage(_, nil) = send(line, &session, &out),
                case .streamMessage(_, nil) = session.messageOpened(.opened, out: &out)
            else { return false }
            var encoder = MessageEncoder(bodyLines: nil)
            message.withUnsafeBytes { encoder.encode($0, out: &out) }
            encoder.finish(out: &out)
        }
        guard case .none = send(dele, &session, &out),
            case .commitDeletions(let indices) = send(quit, &session, &out),
            indices == [0],
            case .close = session.updateFinished(failed: 0, out: &out)
        else { return false }
        return session.isClosed && session.counters.badCommands == 0
    }

    private func send(_ line: [UInt8], _ session: inout Session, _ out: inout ReusableSink) -> SessionAction {
        line.withUnsafeBytes { session.handleLine($0, out: &out) }
    }
}
