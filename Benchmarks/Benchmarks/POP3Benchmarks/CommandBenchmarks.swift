import Benchmark
import POP3

/// Parsing and dispatch in TRANSACTION, measured per command: LineParser over
/// pipelined input plus `Session.handleLine`, replies into a warm reused sink.
func registerCommandBenchmarks() {
    // 1000 commands per measured iteration; `--scale` divides the results by it,
    // so the scaled table reads "per command".
    let commandsPerIteration = BenchmarkScalingFactor.kilo
    let perCommand = Benchmark.Configuration(scalingFactor: commandsPerIteration)
    let count = commandsPerIteration.rawValue

    let pipelinedNoops = Fixtures.pipelined(Array(repeating: "NOOP", count: count))
    Benchmark("LineParser only (1000 pipelined lines)", configuration: perCommand) { benchmark in
        var parser = LineParser()
        var lines = 0
        benchmark.startMeasurement()
        pipelinedNoops.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let (event, consumed) = parser.next(UnsafeRawBufferPointer(rebasing: all[offset...]))
                offset += consumed
                if case .line = event { lines += 1 } else { break }
            }
        }
        benchmark.stopMeasurement()
        if lines != count { benchmark.error("parsed \(lines) lines, expected \(count)") }
        blackHole(lines)
    }

    // A mix a client sends in TRANSACTION (RETR and UIDL only their status lines here).
    let mix = ["NOOP", "STAT", "LIST 3", "UIDL 7", "RETR 2", "DELE 4", "RSET", "LIST 9"]
    let mixInput = Fixtures.pipelined((0..<count).map { mix[$0 % mix.count] })
    Benchmark("Command mix NOOP/STAT/LIST n/UIDL n/RETR n/DELE n/RSET", configuration: perCommand) { benchmark in
        runPipelined(benchmark, listing: Fixtures.listing10, input: mixInput)
    }

    let numbered = { (verb: String) in Fixtures.pipelined((1...count).map { "\(verb) \($0)" }) }
    let perVerb: [(String, [UInt8])] = [
        ("NOOP", pipelinedNoops),
        ("STAT", Fixtures.pipelined(Array(repeating: "STAT", count: count))),
        ("LIST n", numbered("LIST")),
        ("UIDL n", numbered("UIDL")),
        ("DELE n", numbered("DELE")),
        ("RETR n (status line only)", numbered("RETR")),
    ]
    for (name, input) in perVerb {
        Benchmark("Per command: \(name)", configuration: perCommand) { benchmark in
            runPipelined(benchmark, listing: Fixtures.listing1000, input: input)
        }
    }
}

/// Feeds `input` through LineParser and `Session.handleLine` in a freshly
/// logged-in session (built before measurement starts), as the glue does after
/// one read. Fails the benchmark if any reply was `-ERR`.
func runPipelined(_ benchmark: Benchmark, listing: MaildropListing, input: [UInt8]) {
    guard var session = Fixtures.transactionSession(listing) else {
        benchmark.error("login failed")
        return
    }
    var sink = ReusableSink()
    defer { sink.deallocate() }
    var parser = LineParser()
    var lines = 0

    benchmark.startMeasurement()
    input.withUnsafeBytes { all in
        var offset = 0
        while offset < all.count {
            parser.maxLineLength = session.maxLineLength
            let window = UnsafeRawBufferPointer(rebasing: all[offset...])
            let (event, consumed) = parser.next(window)
            offset += consumed
            switch event {
            case .line(let range):
                lines += 1
                var action = session.handleLine(UnsafeRawBufferPointer(rebasing: window[range]), out: &sink)
                // RETR/TOP: the glue opens the file, then the session writes its status line.
                if case .openMessage = action { action = session.messageOpened(.opened, out: &sink) }
                if case .produce = action {
                    while !session.produceMore(out: &sink, maxBytes: 16 * 1024) {}
                }
            case .tooLong:
                _ = session.lineTooLong(out: &sink)
            case .needMore:
                offset = all.count
            }
        }
    }
    benchmark.stopMeasurement()

    if lines != input.count(where: { $0 == 0x0A }) || session.counters.badCommands != 0 {
        benchmark.error("lines \(lines), bad commands \(session.counters.badCommands)")
    }
    if sink.flushedBytes == 0, let bad = firstErrorReply(sink.pending) {
        benchmark.error("unexpected reply: \(bad)")
    }
    blackHole(sink.lastByte)
}

/// The first `-ERR` line in `output`, if any (checked after measurement).
func firstErrorReply(_ output: UnsafeRawBufferPointer) -> String? {
    var lineStart = 0
    for index in output.indices where output[index] == 0x0A {
        let line = output[lineStart..<index]
        if line.starts(with: "-ERR".utf8) {
            return String(decoding: line, as: UTF8.self)
        }
        lineStart = index + 1
    }
    return nil
}
