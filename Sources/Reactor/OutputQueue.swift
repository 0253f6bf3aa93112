import Glibc

/// The loop's free output chunks, shared by every connection. Chunks beyond `maxPooledChunks`
/// go back to malloc, and are counted so the loop can hand the freed memory back to the
/// kernel (`malloc_trim`, EventLoop+Memory.swift): glibc keeps freed 16 KiB blocks in its
/// heap, so after a burst of output RSS would otherwise stay at the burst's peak.
struct ChunkPool {
    var free: [UnsafeMutableRawBufferPointer] = []
    /// Chunks deallocated since the loop last trimmed the heap.
    var freedSinceTrim = 0

    mutating func take() -> UnsafeMutableRawBufferPointer {
        free.popLast() ?? .allocate(byteCount: OutputQueue.chunkBytes, alignment: 16)
    }

    mutating func give(_ chunk: UnsafeMutableRawBufferPointer) {
        if free.count < OutputQueue.maxPooledChunks {
            free.append(chunk)
        } else {
            chunk.deallocate()
            freedSinceTrim += 1
        }
    }

    func deallocateAll() {
        for chunk in free { chunk.deallocate() }
    }
}

/// A connection's pending output: fixed-size chunks borrowed from the loop's pool, written with
/// writev. An empty queue holds no chunk, so idle connections cost no output memory.
struct OutputQueue {
    /// Size of one output chunk.
    static let chunkBytes = 16 * 1024
    /// Chunks kept in the loop's free pool (beyond that they go back to malloc): 4 MiB. Enough
    /// for the churn of many streaming sessions (each returns chunks as fast as it takes them);
    /// a burst beyond it is returned to malloc rather than kept for the life of the process.
    static let maxPooledChunks = 256
    /// iovecs per writev call (well under IOV_MAX = 1024).
    static let maxIOVecs = 64

    private var chunks: [UnsafeMutableRawBufferPointer] = []
    private var head = 0  // read offset in chunks[0]
    private var tail = 0  // write offset in chunks.last
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    mutating func append(_ bytes: UnsafeRawBufferPointer, pool: inout ChunkPool) {
        var offset = 0
        while offset < bytes.count {
            if chunks.isEmpty || tail == Self.chunkBytes {
                chunks.append(pool.take())
                tail = 0
            }
            let n = min(bytes.count - offset, Self.chunkBytes - tail)
            // chunks.last exists: appended above when needed.
            let chunk = chunks[chunks.count - 1]
            UnsafeMutableRawBufferPointer(rebasing: chunk[tail..<tail + n])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]))
            tail += n
            offset += n
            count += n
        }
    }

    /// The free tail of the last chunk, taking a new chunk when it is full.
    mutating func reserve(pool: inout ChunkPool) -> UnsafeMutableRawBufferPointer {
        if chunks.isEmpty || tail == Self.chunkBytes {
            chunks.append(pool.take())
            tail = 0
        }
        let chunk = chunks[chunks.count - 1]
        return UnsafeMutableRawBufferPointer(rebasing: chunk[tail..<Self.chunkBytes])
    }

    /// Counts `n` bytes written into the space `reserve` returned.
    mutating func commit(_ n: Int) {
        let n = min(n, Self.chunkBytes - tail)
        tail += n
        count += n
    }

    /// Calls body with iovecs over the queued bytes (at most maxIOVecs chunks).
    func withIOVecs<R>(_ body: (UnsafeBufferPointer<iovec>) throws -> R) rethrows -> R {
        let used = min(chunks.count, Self.maxIOVecs)
        return try withUnsafeTemporaryAllocation(of: iovec.self, capacity: max(used, 1)) { iov in
            for i in 0..<used {
                let start = i == 0 ? head : 0
                let end = i == chunks.count - 1 ? tail : Self.chunkBytes
                iov[i] = iovec(iov_base: chunks[i].baseAddress.map { $0 + start }, iov_len: end - start)
            }
            return try body(UnsafeBufferPointer(rebasing: iov[0..<used]))
        }
    }

    mutating func consume(_ n: Int, pool: inout ChunkPool) {
        var left = min(n, count)
        count -= left
        while left > 0, !chunks.isEmpty {
            let end = chunks.count == 1 ? tail : Self.chunkBytes
            let step = min(left, end - head)
            head += step
            left -= step
            if head == end {
                pool.give(chunks.removeFirst())
                head = 0
                if chunks.isEmpty { tail = 0 }
            }
        }
        if count == 0 { release(to: &pool) }
    }

    mutating func release(to pool: inout ChunkPool) {
        for chunk in chunks { pool.give(chunk) }
        chunks.removeAll(keepingCapacity: true)
        head = 0
        tail = 0
        count = 0
    }
}
