import Glibc

/// The process's log output on stderr, with the session-end lines of one loop turn batched
/// into one write(2) (issue 17: a write per session was a system call per session for a
/// line nobody reads before the turn ends).
///
/// Every line of the process goes through here (`StderrLogHandler.log` calls `write`), so a
/// line logged while session-end lines wait is written after them, in the order the lines
/// were made. Session-end lines are formatted straight into the pending buffer (`append`,
/// reused: no allocation once it has grown) and written by `flush`, which the loop calls at
/// the end of every turn (`EventLoop.addEndOfTurnHook`, after queued output was flushed, so
/// the sessions that closed in that flush are in it) and `ServerRunner` once the loop stopped.
///
/// One write carries whole lines and at most `maxWriteOctets` of them (a line longer than
/// that is written alone): writes of at most PIPE_BUF octets to a pipe are atomic (pipe(7)),
/// so lines of the workers of one master sharing a journal stream never interleave, as
/// before when every line was its own write.
///
/// Thread-safe: the hashing and storage workers and the configuration loader log too. A
/// pthread mutex (ARCHITECTURE.md convention 11; `Auth.PThreadLocked` is internal to Auth).
final class LogBatch: @unchecked Sendable {
    /// The process's batch, writing to stderr.
    static let standardError = LogBatch(descriptor: 2)

    /// Most octets one write(2) carries: PIPE_BUF (pipe(7): a write of at most this many
    /// octets to a pipe is not interleaved with other writers'). Lines wait in the pending
    /// buffer until the end of the turn or until the next line would pass this.
    static let maxWriteOctets = 4096

    private let descriptor: Int32
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Whole lines (each with its "\n") not yet written. Touched only under `mutex`.
    private var pending: [UInt8] = []
    /// strftime once per second, not once per line. Touched only under `mutex`.
    private var timestamps = TimestampCache()

    init(descriptor: Int32) {
        self.descriptor = descriptor
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        pending.reserveCapacity(2 * Self.maxWriteOctets)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Writes what is pending, then `line` (a whole line with its "\n"), now.
    func write(line: [UInt8]) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if !pending.isEmpty && pending.count + line.count <= Self.maxWriteOctets {
            pending.append(contentsOf: line)
            writePending()
            return
        }
        writePending()
        line.withUnsafeBytes { writeAll($0) }
    }

    /// Lets `body` append one whole line (with its "\n") to the pending buffer; it is written
    /// by the next `flush`, by the next `write`, or here when it does not fit in one write
    /// with the lines before it (those are written first). `body` gets the timestamp cache.
    func append(_ body: (inout [UInt8], inout TimestampCache) -> Void) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let start = pending.count
        body(&pending, &timestamps)
        guard pending.count > Self.maxWriteOctets, start > 0 else { return }
        pending.withUnsafeBytes { writeAll(UnsafeRawBufferPointer(rebasing: $0[..<start])) }
        pending.removeSubrange(..<start)
    }

    /// Writes the pending lines (the loop's end of turn; shutdown).
    func flush() {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        writePending()
    }

    /// Octets waiting (tests).
    var pendingCount: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return pending.count
    }

    private func writePending() {
        guard !pending.isEmpty else { return }
        pending.withUnsafeBytes { writeAll($0) }
        pending.removeAll(keepingCapacity: true)
    }

    /// write(2) until all is written or the descriptor fails. Not the `syscall` family: a log
    /// line that cannot be written (stderr closed, EBADF; a full nonblocking pipe) is dropped,
    /// as before, and must never stop the process.
    private func writeAll(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(descriptor, base + offset, bytes.count - offset)
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}

/// The seconds part of a log line's timestamp, formatted once per second.
struct TimestampCache {
    /// The second `text` is for; nil before the first line.
    private var second: Int?
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    private var text: [UInt8] = []

    /// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds) for `time`: the same text as
    /// `StderrLogHandler.timestamp()`.
    mutating func append(_ time: timespec, to out: inout [UInt8]) {
        if time.tv_sec != second {
            second = time.tv_sec
            text = StderrLogHandler.secondsText(time.tv_sec)
        }
        out.append(contentsOf: text)
        let ms = Int(time.tv_nsec / 1_000_000)
        out.append(UInt8(ascii: "."))
        out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: ms / 100 % 10))
        out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: ms / 10 % 10))
        out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: ms % 10))
        out.append(UInt8(ascii: "Z"))
    }
}
