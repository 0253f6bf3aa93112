import CShim
import Glibc
import SystemCalls

/// Identifies a scheduled timer for `cancelTimer`.
public struct TimerID: Hashable, Sendable {
    let raw: UInt64
}

/// Binary min-heap of deadlines with lazy deletion: cancelling only drops the body, the heap
/// entry is discarded when it reaches the top (or in a compaction once garbage dominates).
/// Idle timeouts re-armed on every command therefore cost nothing here: a connection stores its
/// deadline and re-pushes its entry only when the entry fires early (see Connection+Idle).
struct TimerHeap {
    struct Entry {
        var deadline: UInt64
        var id: UInt64  // also the FIFO tie-breaker: ids grow monotonically
    }

    /// Compaction happens once dead entries exceed live ones by this many (bounds memory after mass cancels).
    static let compactionSlack = 1024

    private(set) var entries: [Entry] = []
    var bodies: [UInt64: () -> Void] = [:]
    private var nextID: UInt64 = 1

    mutating func push(deadline: UInt64, body: @escaping () -> Void) -> TimerID {
        let id = nextID
        nextID += 1
        bodies[id] = body
        entries.append(Entry(deadline: deadline, id: id))
        siftUp(entries.count - 1)
        return TimerID(raw: id)
    }

    mutating func cancel(_ id: TimerID) {
        bodies[id.raw] = nil
        if entries.count > bodies.count * 2 + Self.compactionSlack { compact() }
    }

    /// Earliest live deadline, discarding cancelled entries on top.
    mutating func earliest() -> UInt64? {
        while let top = entries.first {
            if bodies[top.id] != nil { return top.deadline }
            popTop()
        }
        return nil
    }

    /// Removes and returns the body of the earliest timer due at `now`.
    mutating func popDue(now: UInt64) -> (() -> Void)? {
        while let top = entries.first, top.deadline <= now {
            popTop()
            if let body = bodies.removeValue(forKey: top.id) { return body }
        }
        return nil
    }

    private static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.deadline < b.deadline || (a.deadline == b.deadline && a.id < b.id)
    }

    private mutating func popTop() {
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            siftDown(0)
        }
    }

    private mutating func compact() {
        entries.removeAll { bodies[$0.id] == nil }
        if entries.count > 1 {
            for i in stride(from: entries.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        }
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.less(entries[child], entries[parent]) else { return }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let count = entries.count
        while true {
            let left = 2 * parent + 1
            if left >= count { return }
            var smallest = left
            if left + 1 < count, Self.less(entries[left + 1], entries[left]) { smallest = left + 1 }
            guard Self.less(entries[smallest], entries[parent]) else { return }
            entries.swapAt(smallest, parent)
            parent = smallest
        }
    }
}

extension EventLoop {
    /// Runs body once, `nanoseconds` after the loop's current time. Timers due at the same
    /// instant run in the order they were scheduled.
    @discardableResult
    public func scheduleTimer(after nanoseconds: UInt64, _ body: @escaping () -> Void) -> TimerID {
        let base = max(now, cshim_monotonic_ns())
        let (deadline, overflow) = base.addingReportingOverflow(nanoseconds)
        return timers.push(deadline: overflow ? UInt64.max : deadline, body: body)
    }

    /// Cancels a timer; cancelling one that already ran or was cancelled is harmless.
    public func cancelTimer(_ id: TimerID) {
        timers.cancel(id)
    }

    /// Number of live timers (tests, metrics).
    public var scheduledTimerCount: Int { timers.bodies.count }

    /// One timerfd armed to the earliest deadline; re-armed only when that deadline changes.
    func armTimerFD() throws {
        guard let earliest = timers.earliest() else { return }
        if armedDeadline != 0 && armedDeadline <= earliest { return }
        // Absolute deadline 0 would disarm the timerfd; a deadline in the past fires at once.
        let deadline = max(earliest, 1)
        try syscallBlocking("timerfd_settime") { KernelFD.arm(timer: timerFD, deadline: deadline) }
        armedDeadline = deadline
    }

    func runExpiredTimers() {
        // Only timers due at this iteration's time run; ones they schedule wait for the next one.
        let due = now
        while let body = timers.popDue(now: due) {
            body()
        }
    }
}
