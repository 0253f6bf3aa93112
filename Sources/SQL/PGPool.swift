import Reactor

/// `sql_connections` PostgreSQL connections of one process, on its loop: opened at start,
/// re-opened with backoff, each running one query at a time; lookups that find every
/// connection busy or connecting wait in a bounded FIFO.
///
/// Reconnecting: a connection that was ready and then closed (a server restart,
/// `pg_terminate_backend`, a query timeout) is re-opened at once; a connect that fails waits
/// `initialBackoff`, doubling up to `maxBackoff`, before the next try. So a stopped database
/// costs one connect attempt per connection every `maxBackoff` seconds, and logins work again
/// within about `maxBackoff` of the database coming back.
///
/// Outages: the pool is *up* until a connect attempt fails or a query is lost (timed out,
/// connection broken); the first such failure calls `onOutage` (once per outage, however
/// many logins fail during it); the next successful connect calls `onRecovery` with the
/// outage's length and the lookups refused meanwhile. A ready connection that the server
/// closes (`pg_terminate_backend`) and that re-opens at once is no outage. While every
/// connection is closed and waiting out its backoff, a lookup fails at once (`.unavailable`):
/// there is nothing to wait for. Call on the loop.
public final class PGPool {
    /// Seconds before the first retry of a failed connect.
    public static let initialBackoff = 0.1
    /// Longest wait between connect attempts, in seconds.
    public static let maxBackoff = 2.0
    /// Lookups waiting for a free connection at most; more fail with `.unavailable` (the
    /// process already has that many logins stuck behind the database).
    public static let maxWaiting = 4096
    /// How often a full FIFO is searched for lookups whose clients left (`abandoned`, one
    /// `recv(MSG_PEEK)` each): at most every 100 ms, so that during an outage with the FIFO
    /// full each refused login does not cost `maxWaiting` system calls on the loop.
    public static let abandonedScanIntervalNanoseconds: UInt64 = 100_000_000
    /// Waiting lookups one search of a full FIFO asks at most whether their client left (one
    /// `recv(MSG_PEEK)` each), so that no loop turn spends more than 256 system calls on it;
    /// the next search resumes where this one stopped (`abandonedScanCursor`). A full FIFO
    /// (`maxWaiting`) is thus searched whole in ceil(4,096 / 256) = 16 searches, 1.6 s at one
    /// per `abandonedScanIntervalNanoseconds` while refused logins keep coming.
    public static let abandonedScanBatch = 256

    /// Server notices and warnings of any connection.
    public var onNotice: ((String) -> Void)?
    /// Runs once when an outage starts, with libpq's reason.
    public var onOutage: ((String) -> Void)?
    /// Runs once when a connection succeeds after an outage: its length in seconds and the
    /// lookups that failed meanwhile.
    public var onRecovery: ((Double, Int) -> Void)?

    private let loop: EventLoop
    private let timeoutNanoseconds: UInt64
    private var slots: [Slot] = []
    private var waiting: [Waiting] = []
    private var waitingHead = 0
    private var isUp = true
    private var downSince: UInt64 = 0
    private var refusedDuringOutage = 0
    /// The outage began with a lost query (a timeout): connections still open, so it ends
    /// with the next query the database answers, not with a connect.
    private var downByQuery = false
    private var stopped = false
    /// `loop.now` of the last search of a full FIFO (`abandonedScanIntervalNanoseconds`).
    private var lastAbandonedScan: UInt64 = 0
    /// Index in `waiting` where the next search of a full FIFO resumes. An index stays valid
    /// while its item waits (items are marked dead in place, new ones appended); below
    /// `waitingHead` (items served since) it means the head, at or past the end it means
    /// "start again at the head"; 0 again when the FIFO is reset.
    private var abandonedScanCursor = 0

    private final class Slot {
        let connection: PGConnection
        var backoff = PGPool.initialBackoff
        var timer: TimerID?
        var wasReady = false
        init(connection: PGConnection) { self.connection = connection }
    }

    private struct Waiting {
        var sql: String
        var parameters: [[UInt8]]
        var completion: (Result<PGRows, PGFailure>) -> Void
        var timer: TimerID?
        /// False once served, failed or expired: dispatch skips it.
        var live = true
        /// True once nobody waits for the answer (the client closed its connection).
        var abandoned: (() -> Bool)?
        /// Times it may still be run again after its connection broke under it (`send`).
        var retries: Int
    }

    /// `connections` ≥ 1; `timeoutNanoseconds` bounds each connect, each query and each wait
    /// for a free connection.
    public init(loop: EventLoop, info: ConnectInfo, connections: Int, timeoutNanoseconds: UInt64) {
        self.loop = loop
        self.timeoutNanoseconds = timeoutNanoseconds
        for i in 0..<max(1, connections) {
            let slot = Slot(connection: PGConnection(loop: loop, info: info, label: "#\(i + 1)",
                                                    timeoutNanoseconds: timeoutNanoseconds))
            slot.connection.onReady = { [weak self, unowned slot] in self?.ready(slot) }
            slot.connection.onClosed = { [weak self, unowned slot] reason in self?.closed(slot, reason: reason) }
            slot.connection.onNotice = { [weak self] message in self?.onNotice?(message) }
            slots.append(slot)
        }
    }

    deinit {
        for slot in slots { if let t = slot.timer { loop.cancelTimer(t) } }
    }

    /// Opens every connection (returns at once; they connect on the loop).
    public func start() {
        stopped = false
        for slot in slots where slot.connection.state == .closed && slot.timer == nil { slot.connection.connect() }
    }

    /// Closes every connection and fails the waiting lookups (shutdown, or a new
    /// `sql_connect` on reload).
    public func stop() {
        stopped = true
        for slot in slots {
            if let t = slot.timer { loop.cancelTimer(t) }
            slot.timer = nil
            slot.connection.close()
        }
        failWaiting("user database connections closed")
    }

    /// Connections ready now (tests, metrics).
    public var readyCount: Int { slots.reduce(0) { $0 + ($1.connection.state == .ready ? 1 : 0) } }
    /// Lookups waiting for a connection.
    public private(set) var waitingCount = 0
    /// The state of each connection (tests): `.closed` ones are waiting out their backoff.
    var connectionStates: [PGConnection.State] { slots.map(\.connection.state) }

    /// Runs `sql` with `parameters` (binary-format octets, `PGConnection.query`) on a free
    /// connection, or waits (up to the timeout) for one. `completion` runs exactly once on
    /// the loop; `.unavailable` when no connection can be had. `abandoned`, asked when a
    /// waiting lookup's turn comes (and when the queue is full), says that nobody wants the
    /// answer any more (its client closed): it then completes with `.unavailable` without a
    /// query, so that lookups of clients that left never hold a connection others wait for.
    public func query(_ sql: String, parameters: [[UInt8]], abandoned: (() -> Bool)? = nil,
                      completion: @escaping (Result<PGRows, PGFailure>) -> Void) {
        if slots.contains(where: { $0.connection.state == .ready }) {
            // Earlier lookups first (the FIFO is empty unless a connection just came back).
            if waitingCount > 0 { dispatchWaiting() }
            if waitingCount == 0, let slot = slots.first(where: { $0.connection.state == .ready }) {
                return send(slot, sql, parameters, abandoned: abandoned, retries: slots.count, completion)
            }
        }
        let anyComing = slots.contains { $0.connection.state == .connecting || $0.connection.state == .busy }
        guard !stopped, anyComing else {
            refusedDuringOutage &+= 1
            return completion(.failure(.unavailable(isUp ? "no connection to the user database" : "user database unreachable")))
        }
        if waitingCount >= Self.maxWaiting, loop.now &- lastAbandonedScan >= Self.abandonedScanIntervalNanoseconds {
            lastAbandonedScan = loop.now
            dropAbandoned()
        }
        guard waitingCount < Self.maxWaiting else {
            refusedDuringOutage &+= 1
            return completion(.failure(.unavailable("\(Self.maxWaiting) lookups already waiting for a connection")))
        }
        enqueue(Waiting(sql: sql, parameters: parameters, completion: completion, abandoned: abandoned,
                        retries: slots.count))
    }

    private func enqueue(_ item: Waiting) {
        compactWaiting()
        let index = waiting.count
        var item = item
        item.timer = loop.scheduleTimer(after: timeoutNanoseconds) { [weak self] in
            self?.waitExpired(index: index)
        }
        waiting.append(item)
        waitingCount += 1
    }

    /// Runs the query on `slot`. When the connection breaks under it (the server ended it:
    /// `pg_terminate_backend`, a restart, an idle connection dropped on the way; libpq sees
    /// it only when it sends on it), the lookup, a read that is safe to repeat, is run again
    /// on another or the re-opened connection, up to `retries` times (as Dovecot's SQL
    /// driver retries a query once after a lost connection), instead of failing a login
    /// the database can answer. Not after a timeout: the database is slow, not gone.
    private func send(_ slot: Slot, _ sql: String, _ parameters: [[UInt8]], abandoned: (() -> Bool)?,
                      retries: Int, _ completion: @escaping (Result<PGRows, PGFailure>) -> Void) {
        let sent = slot.connection.query(sql, parameters: parameters) { [weak self] result in
            if case .failure(.unavailable(let why)) = result, let self, !self.stopped, retries > 0,
               why != PGConnection.queryTimedOut, self.waitingCount < Self.maxWaiting {
                // Queued, not sent now: the broken connection is re-opened right after this
                // completion (`closed`), and another that looks ready may be broken too
                // (pg_terminate_backend of every connection). If none comes back, the
                // queue is failed at once (`closed`).
                return self.enqueue(Waiting(sql: sql, parameters: parameters, completion: completion,
                                            abandoned: abandoned, retries: retries - 1))
            }
            if case .failure(.unavailable(let why)) = result, let self, !self.stopped {
                // A query timed out or its connection broke: this login is refused.
                if self.isUp { self.downByQuery = true }
                self.outage(why)
                self.refusedDuringOutage &+= 1
            } else if let self, !self.isUp, self.downByQuery {
                // The database answered (rows or an error of its own): a slow spell is over.
                self.recover()
            }
            completion(result)
            self?.dispatchWaiting()
        }
        if !sent { completion(.failure(.notReady)) }
    }

    private func dispatchWaiting() {
        while waitingHead < waiting.count, let slot = slots.first(where: { $0.connection.state == .ready }) {
            let item = waiting[waitingHead]
            waiting[waitingHead].live = false
            waiting[waitingHead].parameters = []
            waitingHead += 1
            guard item.live else { continue }
            waitingCount -= 1
            if let t = item.timer { loop.cancelTimer(t) }
            if item.abandoned?() == true {
                item.completion(.failure(.unavailable("the client went away")))
                continue
            }
            send(slot, item.sql, item.parameters, abandoned: item.abandoned, retries: item.retries, item.completion)
        }
        compactWaiting()
    }

    /// The queue is full: completes (without a query) the waiting lookups nobody wants any
    /// more, in place (the other items' timers hold their indices). One pass of at most
    /// `waiting.count - waitingHead` steps: from `abandonedScanCursor` (the head when it is
    /// outside the waiting part) to the end, then once from the head, so no entry is looked at
    /// twice in a search. Dead entries and lookups without `abandoned` cost a step, not a
    /// question; at most `abandonedScanBatch` are asked. The cursor is left where the pass
    /// stopped, so the next search goes on from there.
    private func dropAbandoned() {
        let steps = waiting.count - waitingHead
        guard steps > 0 else { return }
        var index = abandonedScanCursor
        if index < waitingHead || index >= waiting.count { index = waitingHead }
        var wrapped = false
        var asked = 0, step = 0
        while step < steps, asked < Self.abandonedScanBatch {
            step += 1
            // The end: on from the head, once. A completion below may have reset the FIFO
            // (`compactWaiting` empties it): the index is checked against its count after
            // every one. (Entries a completion served, below the head, are dead: skipped.)
            if index >= waiting.count {
                guard !wrapped else { break }
                wrapped = true
                index = waitingHead
                guard index < waiting.count else { break }
            }
            let current = index
            index += 1
            guard waiting[current].live, let abandoned = waiting[current].abandoned else { continue }
            asked += 1
            guard abandoned() else { continue }
            let item = retire(current)
            if let t = item.timer { loop.cancelTimer(t) }
            item.completion(.failure(.unavailable("the client went away")))
        }
        abandonedScanCursor = index
        dropDeadHead()
    }

    /// Marks the waiting lookup at `index` dead and returns it, for its completion. In place:
    /// removing from the middle of the FIFO would shift the indices the other timers hold; the
    /// dead entry is skipped by dispatch and by the searches, and leaves the storage once it
    /// reaches the front (`dropDeadHead`). Its parameters and completion are released now.
    private func retire(_ index: Int) -> Waiting {
        let item = waiting[index]
        waiting[index].live = false
        waiting[index].parameters = []
        waiting[index].completion = { _ in }
        waitingCount -= 1
        return item
    }

    /// Moves the head past the dead entries at the front (expired or abandoned lookups), then
    /// compacts. During an outage nothing is served, so without this every lookup that timed
    /// out would stay in the array as a dead entry: its storage would grow with the arrival
    /// rate times the outage's length, and each search of a full queue would step over all of
    /// them. Lookups expire in FIFO order (one timeout for all), so the dead ones are at the
    /// front. Live entries keep their indices (their timers hold them).
    private func dropDeadHead() {
        while waitingHead < waiting.count && !waiting[waitingHead].live { waitingHead += 1 }
        compactWaiting()
    }

    /// Entries the FIFO's storage holds from the head on, dead ones included (tests).
    var waitingStorageCount: Int { waiting.count - waitingHead }

    /// The FIFO is reset only when everything in it has been served, so an index stays
    /// valid while its item waits (its timer is cancelled when it is served).
    private func compactWaiting() {
        if waitingHead == waiting.count {
            waiting.removeAll(keepingCapacity: true)
            waitingHead = 0
            abandonedScanCursor = 0
        }
    }

    private func waitExpired(index: Int) {
        guard index >= waitingHead, index < waiting.count, waiting[index].live else { return }
        let item = retire(index)
        refusedDuringOutage &+= 1
        item.completion(.failure(.unavailable("no free user database connection within the timeout")))
        dropDeadHead()
    }

    private func failWaiting(_ reason: String) {
        let pending = waiting[waitingHead...]
        waiting.removeAll(keepingCapacity: true)
        waitingHead = 0
        abandonedScanCursor = 0
        waitingCount = 0
        for item in pending where item.live {
            if let t = item.timer { loop.cancelTimer(t) }
            item.completion(.failure(.unavailable(reason)))
        }
    }

    // MARK: connection events

    private func ready(_ slot: Slot) {
        slot.backoff = Self.initialBackoff
        slot.wasReady = true
        // A connect ends an outage of connects; one that began with a timed-out query ends
        // when a query is answered (`send`): the re-opened connection proves nothing.
        if !isUp && !downByQuery { recover() }
        dispatchWaiting()
    }

    private func recover() {
        isUp = true
        downByQuery = false
        let seconds = Double(cshimNow() &- downSince) / 1e9
        onRecovery?(seconds, refusedDuringOutage)
        refusedDuringOutage = 0
    }

    /// The first failure while up starts an outage; later ones are only counted.
    private func outage(_ reason: String) {
        guard isUp else { return }
        isUp = false
        downSince = cshimNow()
        onOutage?(reason)
    }

    private func closed(_ slot: Slot, reason: String) {
        guard !stopped else { return }
        if let t = slot.timer { loop.cancelTimer(t) }
        slot.timer = nil
        if slot.wasReady {
            // The server closed a ready connection (pg_terminate_backend, a restart, an idle
            // timeout) or its query failed (counted in `send`): re-opened now, not from a timer,
            // so that a lookup arriving meanwhile waits for it instead of finding every
            // connection closed and being refused. Not an outage by itself: only if the re-open
            // fails (then this runs again, with `wasReady` false), or a lookup was lost.
            slot.wasReady = false
            slot.connection.connect()
            return
        }
        outage(reason)
        // A connect failed: the outage is one of connectivity now, ended by a connect.
        downByQuery = false
        let delay = slot.backoff
        slot.backoff = min(slot.backoff * 2, Self.maxBackoff)
        slot.timer = loop.scheduleTimer(after: UInt64(delay * 1e9)) { [weak self, unowned slot] in
            slot.timer = nil
            guard let self, !self.stopped else { return }
            slot.connection.connect()
        }
        // Lookups waiting for this connection: if no other can serve them, fail them now.
        if !slots.contains(where: { $0.connection.state != .closed }) {
            failWaiting("user database unreachable: \(reason)")
        }
    }

    private func cshimNow() -> UInt64 { loop.now }
}
