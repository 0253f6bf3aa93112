import CShim
import Glibc
import Logging
import SystemCalls

/// Something registered with the selector. The selector knows only descriptors,
/// interests and this callback (redis ae_epoll.c style).
protocol Selectable: AnyObject {
    func handleEvent(_ events: UInt32)
    /// Names the handler in a loop-lag warning (EventLoop+Lag.swift); the type name by default.
    var lagDescription: String { get }
}

/// The single-threaded epoll reactor. Not thread-safe: every method must be called on the
/// thread that calls `run()`, except `Waker.wake()`.
public final class EventLoop {
    /// Most events taken from one epoll_wait (the C shim caps the kernel batch at the same value).
    public static let maxEventsPerWait = 256

    let epfd: Int32
    private var registrations: [Registration?] = []
    private var nextGeneration: UInt32 = 1
    private var stopped = false
    private var events: UnsafeMutableBufferPointer<epoll_event>
    private var beforeWaitHooks: [() -> Void] = []
    private var endOfTurnHooks: [() -> Void] = []
    /// Where the loop logs accept failures, paused listeners and loop-lag warnings (swift-log).
    public var logger: Logger

    /// Monotonic clock in ns, read once per loop iteration (and at scheduling time when idle).
    public private(set) var now: UInt64

    // Timers (EventLoop+Timers.swift).
    let timerFD: Int32
    var timers = TimerHeap()
    var armedDeadline: UInt64 = 0

    // Connections with queued output or deliverable input (Connection.swift).
    var flushQueue: [Connection] = []
    var readQueue: [Connection] = []
    /// The batch being flushed or delivered: the queues' spare storage (`flushConnections`).
    var flushBatch: [Connection] = []
    var readBatch: [Connection] = []
    var wakers: [Int32] = []
    var listenerHandlers: [ObjectIdentifier: ListenerHandler] = [:]
    /// Shared read buffer: connections read here first so idle ones hold no input storage.
    let scratch: UnsafeMutableRawBufferPointer
    /// Pool of output chunks shared by every connection (OutputQueue.swift).
    var chunkPool = ChunkPool()
    /// When the heap was last trimmed (EventLoop+Memory.swift).
    var lastTrim: UInt64 = 0
    /// How long the last `malloc_trim` took, ns (EventLoop+Memory.swift).
    var lastTrimDuration: UInt64 = 0
    private var nextConnectionID: UInt64 = 1
    /// epoll_ctl calls made (ADD, MOD, DEL): tests count the system calls of a close path.
    var epollControlCalls = 0

    // Handshake budget (EventLoop+Handshakes.swift).
    /// Handshake steps run per turn of the loop; steps beyond it wait for a later turn, so
    /// ready sessions are served between them. Default `defaultHandshakeStepsPerTurn`.
    public var handshakeStepsPerTurn = EventLoop.defaultHandshakeStepsPerTurn
    var handshakeStepsLeft = EventLoop.defaultHandshakeStepsPerTurn
    /// Handshakes that already ran a step (the client answered the server's flight): served
    /// before `firstSteps`, so a real client is not queued twice behind a flood of ClientHellos.
    var laterSteps = ConnectionFIFO()
    /// Handshakes waiting for their first step (answering the ClientHello).
    var firstSteps = ConnectionFIFO()

    // Loop lag (EventLoop+Lag.swift).
    /// A turn (epoll_wait return to the next epoll_wait) longer than this logs a warning
    /// naming what ran; 0 (the default) logs nothing: the program embedding the loop decides
    /// (pop3d: `loop_lag_warning`, 50 ms; pop3bench, a load generator whose turns are long by
    /// design and whose stdout may be JSON, keeps it off). Turns are measured either way.
    public var loopLagWarningNanoseconds: UInt64 = 0
    /// Turn durations, for metrics and the warning.
    public internal(set) var turnStats = LoopTurnStats()
    /// Called at the end of every turn with its duration, ns (the glue's metrics histogram);
    /// nil costs nothing.
    public var turnObserver: ((UInt64) -> Void)?
    var turn = TurnProbe()

    struct Registration {
        var generation: UInt32
        var handler: Selectable
    }

    /// `readBufferBytes` is the largest single read (the loop's shared scratch buffer): the
    /// server keeps the 16 KiB default, a client that downloads large messages (pop3bench)
    /// asks for more to spend fewer syscalls per megabyte.
    public init(logger: Logger = Logger(label: "pop3d.reactor"), readBufferBytes: Int = Connection.readChunkBytes) throws {
        self.logger = logger
        epfd = try syscallBlocking("epoll_create1") { Epoll.create() }
        do {
            timerFD = try syscallBlocking("timerfd_create") { KernelFD.monotonicTimer() }
        } catch {
            closeDescriptor(epfd)
            throw error
        }
        events = .allocate(capacity: Self.maxEventsPerWait)
        scratch = .allocate(byteCount: max(4096, readBufferBytes), alignment: 16)
        now = cshim_monotonic_ns()
        try register(fd: timerFD, events: Epoll.input, handler: TimerFDHandler(loop: self))
    }

    deinit {
        // Connections still registered hold their delegates strongly and the loop
        // `unowned(unsafe)`: detach them, so no cycle outlives the loop and none of them
        // reaches the loop again (Connection.loop).
        for case let registration? in registrations {
            (registration.handler as? Connection)?.detachFromLoop()
        }
        for fd in wakers { closeDescriptor(fd) }
        closeDescriptor(timerFD)
        closeDescriptor(epfd)
        events.deallocate()
        scratch.deallocate()
        chunkPool.deallocateAll()
    }

    // MARK: selector

    /// Registers fd; the returned generation is stored in data.u64 next to the fd.
    @discardableResult
    func register(fd: Int32, events: UInt32, handler: Selectable) throws -> UInt32 {
        let generation = nextGeneration
        nextGeneration &+= 1
        if nextGeneration == 0 { nextGeneration = 1 }
        let index = Int(fd)
        if index >= registrations.count {
            registrations.append(contentsOf: repeatElement(nil, count: index + 1 - registrations.count + 64))
        }
        epollControlCalls &+= 1
        try syscallBlocking("epoll_ctl(ADD)") {
            Epoll.control(epfd, EPOLL_CTL_ADD, fd, events: events, data: Self.tag(fd: fd, generation: generation))
        }
        registrations[index] = Registration(generation: generation, handler: handler)
        return generation
    }

    func modify(fd: Int32, events: UInt32) throws {
        guard Int(fd) < registrations.count, let registration = registrations[Int(fd)] else { return }
        epollControlCalls &+= 1
        try syscallBlocking("epoll_ctl(MOD)") {
            Epoll.control(epfd, EPOLL_CTL_MOD, fd, events: events, data: Self.tag(fd: fd, generation: registration.generation))
        }
    }

    /// Whether fd is in this loop's epoll set.
    func isRegistered(fd: Int32) -> Bool {
        Int(fd) < registrations.count && registrations[Int(fd)] != nil
    }

    /// Forgets fd; events for it still in the current batch are dropped by the generation check.
    /// `closing`: the caller closes fd next and no other descriptor shares its open file
    /// description, so close(2) removes it from the epoll set and EPOLL_CTL_DEL is skipped
    /// (one system call less per connection; epoll(7), Q6).
    func unregister(fd: Int32, closing: Bool = false) {
        guard Int(fd) < registrations.count, registrations[Int(fd)] != nil else { return }
        registrations[Int(fd)] = nil
        if closing { return }
        epollControlCalls &+= 1
        _ = Epoll.control(epfd, EPOLL_CTL_DEL, fd, events: 0, data: 0)
    }

    static func tag(fd: Int32, generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    func makeConnectionID() -> UInt64 {
        defer { nextConnectionID += 1 }
        return nextConnectionID
    }

    // MARK: running

    /// Runs until `stop()`; before each epoll_wait it flushes output and runs the hooks.
    public func run() throws {
        stopped = false
        now = cshim_monotonic_ns()
        while !stopped {
            runBeforeWait()
            if stopped { break }
            try armTimerFD()
            let timeout: Int32 = hasQueuedWork ? 0 : -1
            endTurn()
            let count: Int32
            switch try syscall("epoll_wait", { epoll_wait(epfd, events.baseAddress, Int32(events.count), timeout) }) {
            case .processed(let n): count = n
            case .wouldBlock: count = 0
            }
            now = cshim_monotonic_ns()
            beginTurn(events: Int(count))
            // Each handler is timed (a vDSO clock read, ~20 ns) so that a long turn can name its
            // slowest handler.
            var handlerStart = now
            for i in 0..<Int(count) {
                let event = events[i]
                let fd = Int(UInt32(truncatingIfNeeded: event.data.u64))
                let generation = UInt32(truncatingIfNeeded: event.data.u64 >> 32)
                // A descriptor closed (or closed and reused) earlier in this batch: drop the stale event.
                guard fd < registrations.count, let registration = registrations[fd],
                      registration.generation == generation
                else { continue }
                registration.handler.handleEvent(event.events)
                let handlerEnd = cshim_monotonic_ns()
                if handlerEnd &- handlerStart > turn.slowestHandlerNanoseconds {
                    turn.noteSlowest(registration.handler, nanoseconds: handlerEnd &- handlerStart)
                }
                handlerStart = handlerEnd
            }
            turn.eventsNanoseconds = handlerStart &- now
            runExpiredTimers()
            turn.timersNanoseconds = cshim_monotonic_ns() &- handlerStart
        }
    }

    /// Makes `run()` return after the current iteration. Call on the loop thread (use a Waker from others).
    public func stop() {
        stopped = true
    }

    /// Runs body just before every epoll_wait (after queued output was flushed).
    public func addBeforeWaitHook(_ body: @escaping () -> Void) {
        beforeWaitHooks.append(body)
    }

    /// Runs body once per turn after queued output was flushed, so it also sees what the
    /// flush did (connections that closed once their output drained): the glue writes the
    /// turn's batched log lines here.
    public func addEndOfTurnHook(_ body: @escaping () -> Void) {
        endOfTurnHooks.append(body)
    }

    private func runBeforeWait() {
        let start = cshim_monotonic_ns()
        serveDeferredHandshakes()
        deliverQueuedReads()
        for hook in beforeWaitHooks { hook() }
        flushConnections()
        trimFreedChunksIfDue()
        for hook in endOfTurnHooks { hook() }
        turn.beforeWaitNanoseconds = cshim_monotonic_ns() &- start
    }
}

/// Drains the timerfd; the expired timers run after the batch in `run()`.
private final class TimerFDHandler: Selectable {
    unowned let loop: EventLoop
    init(loop: EventLoop) { self.loop = loop }
    func handleEvent(_ events: UInt32) {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { read(loop.timerFD, $0.baseAddress, 8) }
        loop.armedDeadline = 0
    }
}
