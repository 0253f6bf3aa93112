import Glibc
import Reactor

/// The live line on stderr, once a second: open connections and rates over the last second.
final class Progress {
    static let intervalNanoseconds: UInt64 = 1_000_000_000

    unowned let bench: Bench
    var lastSessions = 0
    var lastCommands = 0
    var seconds = 0
    var timer: TimerID?

    init(bench: Bench) {
        self.bench = bench
        schedule()
    }

    private func schedule() {
        timer = bench.loop.scheduleTimer(after: Progress.intervalNanoseconds) { [weak self] in
            self?.tick()
        }
    }

    private func tick() {
        seconds += 1
        let stats = bench.stats
        let sessions = stats.sessionsOK + stats.sessionsFailed
        let commands = stats.totalCommands
        let line = "[\(seconds)s] open \(stats.connectionsOpen)  sessions/s \(sessions - lastSessions)"
            + "  commands/s \(commands - lastCommands)  done \(sessions)  errors \(stats.totalErrors)\n"
        writeStandardError(line)
        lastSessions = sessions
        lastCommands = commands
        schedule()
    }

    func finish() {
        if let timer { bench.loop.cancelTimer(timer) }
        timer = nil
    }
}

/// stderr through write(2): the C `stderr` global is not concurrency-safe in Swift 6.
func writeStandardError(_ text: String) {
    var copy = text
    copy.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
}
