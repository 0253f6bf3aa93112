import CShim
import Glibc

/// The master's and workers' shared table (Apache httpd calls its equivalent the
/// scoreboard): one memfd mapped by every process of one `pop3d serve`, a 64-octet slot per
/// worker that only that worker writes, and a header that only the master writes.
///
/// Layout, in native-endian `UInt64` words (each word read and written atomically,
/// `cshim_atomic_*`); a slot is one cache line so workers never share one:
/// - header: `[0]` magic, `[1]` worker count, `[2]` reload generation the master asked for.
/// - slot *i* (1-based, at octet 64·*i*): `[0]` pid, `[1]` state (`SlotState`), `[2]`
///   heartbeat (CLOCK_MONOTONIC ns, system-wide, so comparable across processes), `[3]`
///   connections, `[4]` logged-in sessions, `[5]` sessions served, `[6]` the reload
///   generation this worker finished, `[7]` unauthenticated connections.
///
/// The master resets a slot when it reaps the worker, so a dead worker's connections stop
/// counting against `max_connections` as soon as SIGCHLD is handled.
public final class Scoreboard: @unchecked Sendable {
    /// States of a slot's `[1]` word.
    public enum SlotState: UInt64, Sendable {
        /// `empty`: no worker; `starting`: spawned, not serving yet; `serving`; `draining`: after
        /// SIGTERM or SIGINT, its sessions ending.
        case empty = 0, starting = 1, serving = 2, draining = 3
        /// The loop has ended; the worker is joining its threads (a passwd-file parse in
        /// progress runs to its end) and exits. No heartbeat is expected any more.
        case stopped = 4
    }

    static let magic: UInt64 = 0x706f_7033_6473_6231  // "pop3dsb1"
    static let wordsPerSlot = 8
    /// Workers one scoreboard holds at most (the `workers` setting's maximum).
    public static let maxWorkers = 1_024

    /// The memfd (close-on-exec until the master clears it for a spawn).
    public let fd: Int32
    /// Worker slots in the table (1...`maxWorkers`).
    public let workers: Int
    private let base: UnsafeMutablePointer<UInt64>

    static func bytes(workers: Int) -> UInt64 { UInt64(workers + 1) * UInt64(wordsPerSlot * 8) }

    /// Creates the table (master). Throws `ConfigError` when memfd/mmap fail.
    public init(creatingFor workers: Int) throws {
        precondition(workers >= 1 && workers <= Self.maxWorkers, "workers is validated by the configuration")
        let size = Self.bytes(workers: workers)
        let fd = cshim_memfd_create("pop3d-scoreboard", size)
        guard fd >= 0 else { throw ConfigError("workers: memfd_create failed: \(errnoText())") }
        guard let raw = cshim_map_shared(fd, size) else {
            let text = errnoText()
            Glibc.close(fd)
            throw ConfigError("workers: mmap of the scoreboard failed: \(text)")
        }
        self.fd = fd
        self.workers = workers
        base = raw.bindMemory(to: UInt64.self, capacity: Int(size / 8))
        cshim_atomic_store_u64(base + 1, UInt64(workers))
        cshim_atomic_store_u64(base, Self.magic)
    }

    /// Maps the table a worker inherited as descriptor `fd`. Throws when it is not one.
    public init(inheritedFD fd: Int32) throws {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size >= Int(Self.bytes(workers: 1)),
              st.st_size <= Int(Self.bytes(workers: Self.maxWorkers)) else {
            throw ConfigError("worker: descriptor \(fd) is not a pop3d scoreboard")
        }
        guard let raw = cshim_map_shared(fd, UInt64(st.st_size)) else {
            throw ConfigError("worker: mmap of the scoreboard failed: \(errnoText())")
        }
        let words = raw.bindMemory(to: UInt64.self, capacity: Int(st.st_size) / 8)
        let count = cshim_atomic_load_u64(words + 1)
        guard cshim_atomic_load_u64(words) == Self.magic, count >= 1, count <= UInt64(Self.maxWorkers),
              Self.bytes(workers: Int(count)) <= UInt64(st.st_size) else {
            throw ConfigError("worker: descriptor \(fd) is not a pop3d scoreboard")
        }
        self.fd = fd
        workers = Int(count)
        base = words
    }

    private func word(_ slot: Int, _ index: Int) -> UnsafeMutablePointer<UInt64> {
        base + slot * Self.wordsPerSlot + index
    }

    /// The reload generation the master asked for (header word 2).
    public var requestedReload: UInt64 {
        get { cshim_atomic_load_u64(word(0, 2)) }
        set { cshim_atomic_store_u64(word(0, 2), newValue) }
    }

    /// One worker's slot (1...workers).
    public func slot(_ id: Int) -> Slot {
        precondition(id >= 1 && id <= workers, "worker ids come from the master")
        return Slot(words: word(id, 0))
    }

    /// Connections of every worker but `id` (host-wide `max_connections`).
    public func connections(except id: Int) -> Int {
        var sum = 0
        for other in 1...workers where other != id { sum &+= Int(clamping: slot(other)[.connections]) }
        return sum
    }

    /// A view of one slot: the worker writes, the master reads (and clears on reap).
    public struct Slot: @unchecked Sendable {
        let words: UnsafeMutablePointer<UInt64>

        private func get(_ i: Int) -> UInt64 { cshim_atomic_load_u64(words + i) }
        private func set(_ i: Int, _ v: UInt64) { cshim_atomic_store_u64(words + i, v) }

        /// Word `[0]`: the worker's pid, 0 when the slot is empty.
        public var pid: Int32 {
            get { Int32(truncatingIfNeeded: get(0)) }
            nonmutating set { set(0, UInt64(UInt32(bitPattern: newValue))) }
        }
        /// Word `[1]`; an unknown value reads as `.empty`.
        public var state: SlotState {
            get { SlotState(rawValue: get(1)) ?? .empty }
            nonmutating set { set(1, newValue.rawValue) }
        }
        /// The counters after `pid` and `state`, by word index in the slot.
        public enum Field: Int, Sendable, CaseIterable {
            /// CLOCK_MONOTONIC nanoseconds of the worker loop's last heartbeat.
            case heartbeat = 2
            /// Open connections, sessions past login, sessions ended since the worker started.
            case connections, loggedIn, sessionsServed
            /// The reload generation this worker finished.
            case reloadedGeneration
            /// Connections not logged in yet.
            case unauthenticated
        }

        /// The word at `field`'s index, read and written atomically.
        public subscript(field: Field) -> UInt64 {
            get { get(field.rawValue) }
            nonmutating set { set(field.rawValue, newValue) }
        }

        /// Zeroes every word (the master, after reaping the worker).
        public func clear() {
            for i in 0..<Scoreboard.wordsPerSlot { set(i, 0) }
        }
    }
}

/// One worker's view of the scoreboard, for `POP3Service`: it publishes this worker's count
/// at every change and sums the others' for the host-wide `max_connections`. Two workers
/// admitting at the same instant can each see the other's old count, so the host can hold
/// up to `workers − 1` connections over the limit for that instant.
public final class WorkerShare: Sendable {
    let scoreboard: Scoreboard
    let id: Int
    let slot: Scoreboard.Slot

    /// Worker `id`'s (1-based) view of `scoreboard`.
    public init(scoreboard: Scoreboard, id: Int) {
        self.scoreboard = scoreboard
        self.id = id
        slot = scoreboard.slot(id)
    }

    /// Called at every change of the counts: a few atomic stores.
    func publish(connections: Int, loggedIn: Int, served: Int) {
        slot[.connections] = UInt64(max(0, connections))
        slot[.loggedIn] = UInt64(max(0, loggedIn))
        slot[.sessionsServed] = UInt64(max(0, served))
    }

    func otherWorkersConnections() -> Int { scoreboard.connections(except: id) }

    /// Whether another serving worker holds fewer than `capacity` connections.
    func anotherWorkerHasRoom(capacity: Int) -> Bool {
        for other in 1...scoreboard.workers where other != id {
            let slot = scoreboard.slot(other)
            if slot.state == .serving, slot[.connections] < UInt64(max(0, capacity)) { return true }
        }
        return false
    }
}
