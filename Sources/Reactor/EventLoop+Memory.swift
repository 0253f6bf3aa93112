import CShim

extension EventLoop {
    /// Output memory given back to malloc (chunks beyond the pool) after which the loop asks
    /// glibc to return free heap pages to the kernel: 4 MiB. glibc serves 16 KiB chunks from
    /// its heap and keeps them when freed, so without a trim a burst of output (many slow
    /// readers at once) would leave RSS at the burst's peak for the life of the process.
    public static let trimAfterFreedOutputBytes = 4 << 20
    /// At most one `malloc_trim` per second: it walks the whole heap (microseconds for a small
    /// heap, about a millisecond per few hundred MiB of fragmented heap).
    public static let minTrimIntervalNanoseconds: UInt64 = 1_000_000_000

    /// From `runBeforeWait`, after the flushes of the turn.
    func trimFreedChunksIfDue() {
        guard chunkPool.freedSinceTrim * OutputQueue.chunkBytes >= Self.trimAfterFreedOutputBytes,
              now &- lastTrim >= Self.minTrimIntervalNanoseconds
        else { return }
        chunkPool.freedSinceTrim = 0
        lastTrim = now
        _ = cshim_malloc_trim()
    }
}
