import CShim

extension EventLoop {
    /// Output memory given back to malloc (chunks beyond the pool) after which the loop asks
    /// glibc to return free heap pages to the kernel: 4 MiB. glibc serves 16 KiB chunks from
    /// its heap and keeps them when freed, so without a trim a burst of output (many slow
    /// readers at once) would leave RSS at the burst's peak for the life of the process.
    public static let trimAfterFreedOutputBytes = 4 << 20
    /// At most one `malloc_trim` per second, and never more often than once per 100 times the
    /// last trim took: it walks the heap's free blocks, so its cost grows with fragmentation
    /// (0.8-14 ms measured after 600 stalled RETRs were closed; about 0.5 s in a model with
    /// 100,000 free 16 KiB blocks between live ones). The loop spends at most 1 % of its time
    /// trimming, however fragmented the heap gets.
    public static let minTrimIntervalNanoseconds: UInt64 = 1_000_000_000
    /// The loop-time share trims may take: the next trim waits 100 x the last one's duration.
    static let trimDutyDivisor: UInt64 = 100

    /// From `runBeforeWait`, after the flushes of the turn.
    func trimFreedChunksIfDue() {
        guard chunkPool.freedSinceTrim * OutputQueue.chunkBytes >= Self.trimAfterFreedOutputBytes,
              now &- lastTrim >= max(Self.minTrimIntervalNanoseconds, lastTrimDuration &* Self.trimDutyDivisor)
        else { return }
        chunkPool.freedSinceTrim = 0
        let start = cshim_monotonic_ns()
        _ = cshim_malloc_trim()
        let end = cshim_monotonic_ns()
        lastTrimDuration = end &- start
        lastTrim = end
    }
}
