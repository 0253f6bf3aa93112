import POP3

/// A `ReplySink` over one buffer allocated up front, like the connection's
/// output queue once warm: writing allocates nothing, so a benchmark's malloc
/// count is the code under test's alone.
///
/// When the buffer is full it is "flushed" (its bytes counted and dropped), as
/// the reactor would hand them to the kernel.
struct ReusableSink: ReplySink {
    /// Default size: one 64 KiB message chunk plus its dot-stuffing and CRLFs fits
    /// several times over, so flushes are rare, like a real queue's high-water mark.
    static let defaultCapacity = 256 * 1024

    private let base: UnsafeMutableRawPointer
    let capacity: Int
    /// Bytes in the buffer now.
    private(set) var count = 0
    /// Bytes already flushed.
    private(set) var flushedBytes = 0

    init(capacity: Int = ReusableSink.defaultCapacity) {
        self.capacity = max(1, capacity)
        base = UnsafeMutableRawPointer.allocate(byteCount: self.capacity, alignment: 16)
    }

    /// Everything ever written.
    var totalBytes: Int { flushedBytes + count }

    /// The bytes written since the last flush.
    var pending: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// The last byte written (for `blackHole`, so copies cannot be optimised away).
    var lastByte: UInt8 { count > 0 ? base.load(fromByteOffset: count - 1, as: UInt8.self) : 0 }

    mutating func flush() {
        flushedBytes += count
        count = 0
    }

    mutating func write(_ bytes: UnsafeRawBufferPointer) {
        guard var source = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            if count == capacity { flush() }
            let step = min(remaining, capacity - count)
            (base + count).copyMemory(from: source, byteCount: step)
            count += step
            source += step
            remaining -= step
        }
    }

    /// The buffer's free rest, flushing it first when full (as `OutputSink` takes a new chunk).
    mutating func freeSpace() -> UnsafeMutableRawBufferPointer {
        if count == capacity { flush() }
        return UnsafeMutableRawBufferPointer(start: base + count, count: capacity - count)
    }

    mutating func commitSpace(_ n: Int) {
        count += min(max(n, 0), capacity - count)
    }

    /// Frees the buffer; the sink must not be used afterwards.
    func deallocate() {
        base.deallocate()
    }
}
