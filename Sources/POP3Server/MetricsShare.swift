import CShim
import Glibc

/// Where the workers of a master leave their metrics for the master's `/metrics` (issue 13):
/// one memfd mapped by every process of one `pop3d serve`, a slot per worker that only that
/// worker writes, each holding the worker's latest exposition text (swift-prometheus'
/// rendering of its registry).
///
/// Layout: a header of 8-octet words (`[0]` magic, `[1]` worker count, `[2]` slot octets),
/// then per worker (1-based, at `headerBytes + (id - 1) * slotBytes`) a sequence word, a
/// length word and the text. Writes and reads go through a sequence lock
/// (`cshim_seqlock_write`/`_read`): a reader never keeps a torn copy, and a worker killed
/// in the middle of a write leaves its slot odd, which the master reads as "no new copy".
///
/// Why text, not numbers: histograms and labels travel as they are, the master needs no
/// second copy of the catalogue, and a worker restarted from an upgraded binary with more
/// series still merges.
public final class MetricsShare: @unchecked Sendable {
    static let magic: UInt64 = 0x706f_7033_646d_7431  // "pop3dmt1"
    static let headerBytes = 64
    /// Octets of one worker's snapshot, at most. The catalogue renders to about 14 KiB;
    /// a snapshot that does not fit is not published (logged once), and the master keeps
    /// the worker's previous one.
    public static let slotBytes = 64 * 1024
    /// How often a worker publishes its snapshot: with its heartbeat. A scrape therefore
    /// sees a worker's counts at most this old (plus the scrape's own time).
    public static var publishIntervalNanoseconds: UInt64 { ServerRunner.heartbeatIntervalNanoseconds }

    /// The memfd (close-on-exec until the master clears it for a spawn, as the scoreboard's).
    public let fd: Int32
    /// Worker slots in the area (1...`Scoreboard.maxWorkers`).
    public let workers: Int
    private let base: UnsafeMutableRawPointer
    private let size: Int

    static func bytes(workers: Int) -> Int { headerBytes + workers * slotBytes }

    /// Creates the area (master). Throws `ConfigError` when memfd/mmap fail.
    public init(creatingFor workers: Int) throws {
        precondition(workers >= 1 && workers <= Scoreboard.maxWorkers, "workers is validated by the configuration")
        let size = Self.bytes(workers: workers)
        let fd = cshim_memfd_create("pop3d-metrics", UInt64(size))
        guard fd >= 0 else { throw ConfigError("metrics: memfd_create failed: \(errnoText())") }
        guard let raw = cshim_map_shared(fd, UInt64(size)) else {
            let text = errnoText()
            Glibc.close(fd)
            throw ConfigError("metrics: mmap of the metrics area failed: \(text)")
        }
        self.fd = fd
        self.workers = workers
        self.size = size
        base = raw
        let words = raw.assumingMemoryBound(to: UInt64.self)
        cshim_atomic_store_u64(words + 1, UInt64(workers))
        cshim_atomic_store_u64(words + 2, UInt64(Self.slotBytes))
        cshim_atomic_store_u64(words, Self.magic)
    }

    /// Maps the area a worker inherited as descriptor `fd`. Throws when it is not one.
    public init(inheritedFD fd: Int32) throws {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size >= Self.bytes(workers: 1),
              st.st_size <= Self.bytes(workers: Scoreboard.maxWorkers) else {
            throw ConfigError("worker: descriptor \(fd) is not a pop3d metrics area")
        }
        guard let raw = cshim_map_shared(fd, UInt64(st.st_size)) else {
            throw ConfigError("worker: mmap of the metrics area failed: \(errnoText())")
        }
        let words = raw.assumingMemoryBound(to: UInt64.self)
        let count = cshim_atomic_load_u64(words + 1)
        guard cshim_atomic_load_u64(words) == Self.magic, count >= 1, count <= UInt64(Scoreboard.maxWorkers),
              cshim_atomic_load_u64(words + 2) == UInt64(Self.slotBytes),
              Self.bytes(workers: Int(count)) <= Int(st.st_size) else {
            munmap(raw, Int(st.st_size))
            throw ConfigError("worker: descriptor \(fd) is not a pop3d metrics area")
        }
        self.fd = fd
        workers = Int(count)
        size = Int(st.st_size)
        base = raw
    }

    deinit { munmap(base, size) }

    private func slot(_ id: Int) -> (seq: UnsafeMutablePointer<UInt64>, length: UnsafeMutablePointer<UInt64>, text: UnsafeMutableRawPointer) {
        let start = base + Self.headerBytes + (id - 1) * Self.slotBytes
        let words = start.assumingMemoryBound(to: UInt64.self)
        return (words, words + 1, start + 16)
    }

    /// Largest text a slot holds.
    public static var textCapacity: Int { slotBytes - 16 }

    /// Worker `id` (1-based) publishes `text`. False when it does not fit (nothing written).
    @discardableResult
    public func publish(worker id: Int, _ text: [UInt8]) -> Bool {
        guard id >= 1, id <= workers, text.count <= Self.textCapacity else { return false }
        let s = slot(id)
        text.withUnsafeBytes { bytes in
            if let src = bytes.baseAddress {
                cshim_seqlock_write(s.seq, s.length, s.text, src, UInt64(bytes.count))
            } else {
                cshim_seqlock_write(s.seq, s.length, s.text, s.text, 0)
            }
        }
        return true
    }

    /// Worker `id`'s latest complete snapshot; nil when it has none or a write was under
    /// way in each of a few tries.
    public func snapshot(worker id: Int) -> [UInt8]? {
        guard id >= 1, id <= workers else { return nil }
        let s = slot(id)
        var out = [UInt8](repeating: 0, count: Self.textCapacity)
        for _ in 0..<4 {
            let n = out.withUnsafeMutableBytes { buffer in
                cshim_seqlock_read(s.seq, s.length, s.text, buffer.baseAddress, UInt64(buffer.count))
            }
            if n >= 0 {
                out.removeSubrange(Int(n)...)
                return n == 0 ? nil : out
            }
            sched_yield()
        }
        return nil
    }

    /// Empties worker `id`'s slot (the master, after taking a dead worker's last snapshot).
    public func clear(worker id: Int) {
        guard id >= 1, id <= workers else { return }
        let s = slot(id)
        cshim_atomic_store_u64(s.length, 0)
        cshim_atomic_store_u64(s.seq, 0)
    }
}
