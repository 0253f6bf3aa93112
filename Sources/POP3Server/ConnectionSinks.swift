import POP3
import Reactor

/// Writes session replies straight into the connection's output queue.
///
/// `unowned(unsafe)`: a sink lives only on the stack of a method of the POP3Connection that
/// holds the connection strongly; a checked `unowned` costs a refcount round trip per write,
/// which showed as ~10% of CPU in the session benchmark.
struct ConnectionSink: ReplySink {
    unowned(unsafe) let connection: Connection
    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) { connection.write(bytes) }
}

/// Encodes straight into the connection's output queue: the encoder copies each line into the
/// queue's free chunk space (`freeSpace`/`commitSpace`), with no staging buffer and no
/// per-write call into the connection. `finish()` must run before anything else
/// is written to the connection.
struct OutputSink: ReplySink {
    unowned(unsafe) let connection: Connection
    var space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    var used = 0

    init(connection: Connection) {
        self.connection = connection
    }

    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard var src = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            if used == space.count {
                finish()
                space = connection.reserveOutput()
                if space.count == 0 { return }  // closing: output is dropped anyway
            }
            guard let dst = space.baseAddress else { return }
            let n = min(left, space.count - used)
            (dst + used).copyMemory(from: src, byteCount: n)
            used += n
            src += n
            left -= n
        }
    }

    /// The rest of the current output chunk, taking a new one when it is full: the encoder
    /// copies lines straight into it.
    @inline(__always)
    mutating func freeSpace() -> UnsafeMutableRawBufferPointer {
        if used == space.count {
            finish()
            space = connection.reserveOutput()
        }
        guard let base = space.baseAddress else { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        return UnsafeMutableRawBufferPointer(start: base + used, count: space.count - used)
    }

    @inline(__always)
    mutating func commitSpace(_ count: Int) {
        used += min(max(count, 0), space.count - used)
    }

    /// Queues what was written so far.
    mutating func finish() {
        if used > 0 { connection.commitOutput(used) }
        used = 0
        space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }
}
