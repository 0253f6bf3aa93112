import CShim
import Glibc
import SystemCalls

/// Why a connection closed.
public enum CloseReason: Equatable, Sendable {
    /// The peer closed its side (read returned 0 or EPOLLHUP); queued output was flushed first.
    case peerClosed
    /// ECONNRESET/EPIPE: the peer is gone, queued output was dropped.
    case reset
    /// No input (and no output progress) within `idleTimeout`.
    case idleTimeout
    /// The delegate left `maxInputBytes` unconsumed: a line longer than any limit allows.
    case inputLimitExceeded
    /// `close(flushFirst:)` was called.
    case local
    /// The kernel refused output while more than `maxBlockedOutputBytes` were pending: a peer
    /// that sends commands and never reads their replies (Dovecot closes such a client before
    /// login at 4 KiB of output).
    case outputLimitExceeded
    /// Any other failing call.
    case error(SyscallError)
}

/// The owner of a connection's protocol state. All callbacks run on the loop thread.
public protocol ConnectionDelegate: AnyObject {
    /// Bytes are available: call `connection.withInput { bytes in consumed }` (possibly several times).
    func connectionReadable(_ connection: Connection)
    /// Pending output dropped below the low-water mark after having reached the high-water mark.
    func connectionWritable(_ connection: Connection)
    /// The idle timeout fired; output written now is flushed (best effort) before the close.
    func connectionWillTimeOut(_ connection: Connection)
    /// Last callback; the descriptor is already closed.
    func connectionClosed(_ connection: Connection, reason: CloseReason)
    /// The preamble (`Connection.expectPreamble`) is complete; the transport reads next.
    func connectionPreambleEnded(_ connection: Connection)
}

extension ConnectionDelegate {
    /// Default: nothing; a delegate that never fills the output queue need not implement it.
    public func connectionWritable(_ connection: Connection) {}
    /// Default: nothing; the connection then closes with `.idleTimeout`.
    public func connectionWillTimeOut(_ connection: Connection) {}
    /// Default: nothing; input is delivered through `connectionReadable` as usual.
    public func connectionPreambleEnded(_ connection: Connection) {}
}

/// One nonblocking stream socket on the loop: bounded input, watermarked output queue, idle timeout.
public final class Connection: Selectable {
    /// Largest single read; also the size of the loop's shared read buffer.
    public static let readChunkBytes = 16 * 1024
    /// Default bound on input the delegate may leave unconsumed (a partial line): 8 KiB.
    public static let defaultMaxInputBytes = 8 * 1024
    /// Default output high-water mark: at or above it producers (RETR) stop and the connection
    /// reads no input (output throttle, see `isOutputThrottled`).
    public static let defaultOutputHighWater = 256 * 1024
    /// Default low-water mark: `connectionWritable` fires, and input is read again, when pending
    /// output drops below it.
    public static let defaultOutputLowWater = 64 * 1024

    /// A number unique within its loop (counting up from 1), for logs and metrics.
    public let id: UInt64
    /// The socket; owned by the connection, closed when it closes (never by the delegate).
    public let fd: Int32
    /// The remote address and port as accept4(2) reported it (before any PROXY header).
    public let peer: SocketAddress
    /// Name of the listener it came from ("pop3", "pop3s" or nil).
    public let localName: String?
    /// Strong, and cleared when the connection closes (`finalize`, before `connectionClosed`)
    /// or when its loop goes away (`detachFromLoop`): the owner usually holds the connection
    /// too, and that cycle lasts exactly as long as the connection is open. Not `weak`: a weak
    /// reference gives the delegate a side table (every later retain and release of it takes
    /// the slow path) and costs an atomic load-and-retain on every callback (issue 17).
    public var delegate: ConnectionDelegate?
    /// Free slot for the owner (e.g. the session object); the connection never reads it.
    public var userData: AnyObject?
    /// Input (bytes) the delegate may leave unconsumed; at that size the connection closes with
    /// `.inputLimitExceeded`.
    public var maxInputBytes = Connection.defaultMaxInputBytes
    /// Pending output (bytes) at which `isOutputFull` and the input throttle start.
    public var outputHighWater = Connection.defaultOutputHighWater
    /// Pending output (bytes) below which a full queue calls `connectionWritable` and input is
    /// read again.
    public var outputLowWater = Connection.defaultOutputLowWater
    /// Pending output (bytes) the kernel may refuse before the connection is closed with
    /// `.outputLimitExceeded`; `Int.max` (the default) never closes. Checked only when a flush
    /// stops because the kernel accepts no more, so replies pipelined within one turn to a
    /// client that does read never count. pop3d sets a small value before login (Dovecot's
    /// login processes disconnect at 4 KiB) and `Int.max` after it.
    public var maxBlockedOutputBytes = Int.max

    /// `unowned(unsafe)` (no reference counting on the hot path: every read, write and flush
    /// reaches the loop): the loop outlives every use, by construction. A connection touches
    /// its loop only while it is not closed, that is while it is registered in the loop's
    /// selector table (registered in `init`, taken out only by `finalize`, which marks it
    /// closed first) or from the loop's own callbacks; every entry point that could run on a
    /// closed connection returns before reaching the loop (`write`, `close`, `flush`,
    /// `enqueueRead`, `updateInterest`, the idle timer, which `finalize` cancels). A loop that
    /// is freed while connections are still registered detaches them first (`EventLoop.deinit`
    /// calls `detachFromLoop`, which marks them closed), so a connection that outlives its loop
    /// never reaches it again.
    unowned(unsafe) let loop: EventLoop
    /// The descriptor is the only one of its open file description (accept4 or socket with
    /// close-on-exec, made by the Reactor): close(2) takes it out of the epoll set, so
    /// `finalize` skips EPOLL_CTL_DEL. False for a descriptor handed to the public `init`,
    /// which may have been dup'ed or inherited by a child: epoll keeps a registration until
    /// the last descriptor of the file is closed (epoll(7), Q6), so that one is deleted.
    var closeRemovesRegistration = false
    /// What turns application bytes into wire bytes: `PlainTransport`, or `TLSTransport` after
    /// implicit TLS or STLS (`switchTransport(to:)`).
    public internal(set) var transport: Transport
    var pendingTransport: Transport?

    enum State { case open, closing(CloseReason), closed }
    var state = State.open
    /// True once the connection has closed its descriptor (set just before `connectionClosed` runs).
    public var isClosed: Bool { if case .closed = state { return true } else { return false } }

    // Input: either a view of the loop's scratch buffer (during one dispatch) or own storage
    // holding leftover bytes. Own storage exists only while a partial line is pending.
    var storage: UnsafeMutableRawBufferPointer?
    var storageStart = 0
    var storageEnd = 0
    var view: UnsafeRawBufferPointer?
    var viewConsumed = 0
    /// `pauseReading()` is in effect (the delegate's switch; see also `isOutputThrottled`).
    public private(set) var isReadingPaused = false
    /// Pending output reached `outputHighWater`: no input is read from the kernel or shown to
    /// the delegate until it drains below `outputLowWater`. Separate from `isReadingPaused`
    /// (the delegate's own switch), so neither undoes the other.
    public internal(set) var isOutputThrottled = false
    /// Waiting in the loop's queue for a turn with handshake budget left (EventLoop+Handshakes).
    var isHandshakeDeferred = false
    /// A handshake step already ran for this connection (its next ones are served first).
    var handshakeStarted = false
    var peerEOF = false
    /// A preamble is awaited before the transport reads (Connection+Preamble.swift); nil for
    /// every connection without one.
    var preamble: PreambleState?

    var output = OutputQueue()
    var notifyWhenDrained = false
    var transportNeeds: Interest = []
    var outputBlocked = false
    var registeredEvents: UInt32 = 0
    var inFlushQueue = false
    var inReadQueue = false
    /// The transport speaks first (TLS client) and has not been driven yet: `deliverQueued`
    /// reads once without waiting for epoll.
    var transportKickPending = false

    // Idle timeout (Connection+Idle.swift).
    var idleTimeoutNanoseconds: UInt64 = 0
    var idleDeadline: UInt64 = 0
    var idleTimer: TimerID?

    /// Takes ownership of a connected nonblocking socket and registers it. Set `delegate` before
    /// returning to the loop.
    public init(fd: Int32, peer: SocketAddress, localName: String? = nil, loop: EventLoop,
                transport: Transport = PlainTransport()) throws {
        self.fd = fd
        self.peer = peer
        self.localName = localName
        self.loop = loop
        self.transport = transport
        self.id = loop.makeConnectionID()
        registeredEvents = Epoll.input | Epoll.readHangUp
        do {
            try loop.register(fd: fd, events: registeredEvents, handler: self)
        } catch {
            closeDescriptor(fd)
            throw error
        }
        if transport.speaksFirst { kickTransport() }
    }

    /// A socket from a `Listener` (accept4 with SOCK_CLOEXEC: no other descriptor shares it,
    /// so its close needs no EPOLL_CTL_DEL), named after its listener.
    /// - Throws: `SyscallError` from epoll_ctl(ADD); the socket is closed then.
    public convenience init(accepted socket: AcceptedSocket, loop: EventLoop,
                            transport: Transport = PlainTransport()) throws {
        try self.init(fd: socket.fd, peer: socket.peer, localName: socket.listenerName, loop: loop,
                      transport: transport)
        closeRemovesRegistration = true
        listenerLocalAddress = socket.localAddress
    }

    /// The local address when the listener knew it (bound to one address), else nil.
    public private(set) var listenerLocalAddress: SocketAddress?

    deinit {
        storage?.deallocate()
    }

    // MARK: input

    /// Bytes received and not yet consumed.
    public var bufferedInputBytes: Int {
        if let view { return view.count - viewConsumed + (storageEnd - storageStart) }
        return storageEnd - storageStart
    }

    /// Zero-copy access to the unconsumed input; body returns how many bytes it consumed.
    ///
    /// While output is throttled (`isOutputThrottled`) body sees no bytes: a delegate's parser
    /// gets "need more" and stops, however many commands one read brought; the rest is shown
    /// again once the output drains below `outputLowWater`. This is what carries TCP
    /// backpressure to a client that sends commands and never reads the replies.
    @discardableResult
    public func withInput(_ body: (UnsafeRawBufferPointer) throws -> Int) rethrows -> Int {
        if isOutputThrottled { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        if let view {
            let rest = UnsafeRawBufferPointer(rebasing: view[viewConsumed...])
            let used = max(0, min(try body(rest), rest.count))
            viewConsumed += used
            return used
        }
        guard let storage else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let rest = UnsafeRawBufferPointer(rebasing: storage[storageStart..<storageEnd])
        let used = max(0, min(try body(rest), rest.count))
        storageStart += used
        if storageStart == storageEnd { releaseStorage() }
        return used
    }

    /// Stops readable callbacks (and reading from the kernel) until `resumeReading()`.
    public func pauseReading() {
        guard !isReadingPaused else { return }
        isReadingPaused = true
        updateInterest()
    }

    /// Resumes; bytes already buffered are delivered before the next epoll_wait.
    public func resumeReading() {
        guard isReadingPaused else { return }
        isReadingPaused = false
        updateInterest()
        if bufferedInputBytes > 0 || transport.hasBufferedInput || transportKickPending { enqueueRead() }
    }

    /// Reading from the transport is allowed: neither the delegate nor the output throttle
    /// paused it, no transport switch and no deferred handshake is pending.
    var readingAllowed: Bool {
        !isReadingPaused && !isOutputThrottled && pendingTransport == nil && !isHandshakeDeferred
    }

    /// Pending output reached the high-water mark: stop reading (see `isOutputThrottled`).
    func throttleOutput() {
        notifyWhenDrained = true
        guard !isOutputThrottled else { return }
        isOutputThrottled = true
        updateInterest()
    }

    /// Output drained below the low-water mark: read again, and show input already buffered
    /// (before the next epoll_wait: the peer may send nothing new).
    func unthrottleOutput() {
        guard isOutputThrottled else { return }
        isOutputThrottled = false
        updateInterest()
        if case .open = state, readingAllowed,
           bufferedInputBytes > 0 || transport.hasBufferedInput || transportKickPending {
            enqueueRead()
        }
    }

    var lagDescription: String {
        "connection \(id) (\(peer)\(transport.handshakeStepPending ? ", TLS handshake" : ""))"
    }

    func handleEvent(_ events: UInt32) {
        if isHandshakeDeferred {
            // Only hang-ups are registered while a handshake waits for budget: a client that
            // went away (or half-closed: it can no longer finish the handshake) is dropped
            // before the expensive step instead of after it.
            if events & Epoll.error != 0 {
                finalize(.reset)
            } else if events & (Epoll.hangUp | Epoll.readHangUp) != 0 {
                finalize(.peerClosed)
            }
            return
        }
        if preamble != nil {
            handlePreambleEvent(events)
            return
        }
        if events & Epoll.output != 0 {
            flush()
        }
        let readable = Epoll.input | Epoll.readHangUp | Epoll.hangUp | Epoll.error
        // A TLS write that waited for input (handshake, key update) is retried once the read
        // below has run (also while closing: the last reply still has to go out); a TLS read
        // that waited for the socket to be writable is retried now.
        if events & readable != 0, transportNeeds.contains(.readable), !isClosed { enqueueFlush() }
        guard case .open = state else { return }
        if events & Epoll.output != 0, transportNeeds.contains(.writable), events & readable == 0,
           readingAllowed {
            if admitHandshakeStep() { readFromTransport() }
            return
        }
        if events & readable != 0 {
            if readingAllowed {
                if admitHandshakeStep() { readFromTransport() }
            } else if events & Epoll.error != 0 {
                finalize(.reset)  // always reported, even without interest: would spin while paused
            } else if events & Epoll.hangUp != 0 {
                finalize(.peerClosed)
            }
        }
    }

    /// One read (level-triggered epoll reports the rest), then delivery.
    func readFromTransport() {
        do {
            let result: TransportResult
            let leftover = storageEnd - storageStart
            if let current = storage, leftover < min(loop.scratch.count, maxInputBytes) / 2 {
                // A partial line is waiting. Reading behind it in its own small buffer would cap
                // every read at that buffer's free room (a client downloading megabytes read
                // ~1 KB per syscall); instead move it to the front of the big scratch buffer and
                // read behind it there.
                UnsafeMutableRawBufferPointer(rebasing: loop.scratch[0..<leftover])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: current[storageStart..<storageEnd]))
                releaseStorage()
                let room = min(loop.scratch.count, maxInputBytes) - leftover
                do {
                    result = try transport.read(fd: fd, into: UnsafeMutableRawBufferPointer(rebasing: loop.scratch[leftover..<leftover + room]))
                } catch {
                    keep(UnsafeRawBufferPointer(rebasing: loop.scratch[0..<leftover]))
                    throw error
                }
                if case .bytes(let n) = result {
                    noteActivity()
                    deliver(scratchBytes: leftover + n)
                } else {
                    keep(UnsafeRawBufferPointer(rebasing: loop.scratch[0..<leftover]))
                }
            } else if storage == nil {
                let room = min(loop.scratch.count, maxInputBytes)
                result = try transport.read(fd: fd, into: UnsafeMutableRawBufferPointer(rebasing: loop.scratch[0..<room]))
                if case .bytes(let n) = result {
                    noteActivity()
                    deliver(scratchBytes: n)
                }
            } else {
                let room = prepareStorageRoom()
                guard room > 0, let storage else {
                    finalize(.inputLimitExceeded)
                    return
                }
                result = try transport.read(fd: fd, into: UnsafeMutableRawBufferPointer(rebasing: storage[storageEnd..<storageEnd + room]))
                if case .bytes(let n) = result {
                    storageEnd += n
                    noteActivity()
                    deliverStored()
                }
            }
            switch result {
            case .bytes:
                if case .open = state, readingAllowed, transport.hasBufferedInput { enqueueRead() }
                if transportNeeds.contains(.writable) { transportNeeds.remove(.writable); updateInterest() }
            case .wouldBlock(let needs):
                if needs.contains(.writable) != transportNeeds.contains(.writable) {
                    transportNeeds = needs.contains(.writable) ? transportNeeds.union(.writable) : transportNeeds.subtracting(.writable)
                    updateInterest()
                }
            case .endOfStream:
                peerEOF = true
                close(reason: .peerClosed, flushFirst: true)
            }
        } catch let error as SyscallError {
            finalize(error.errno == ECONNRESET || error.errno == EPIPE ? .reset : .error(error))
        } catch {
            finalize(.error(SyscallError(errno: EPROTO, call: "transport.read")))
        }
    }

    private func deliver(scratchBytes n: Int) {
        view = UnsafeRawBufferPointer(rebasing: loop.scratch[0..<n])
        viewConsumed = 0
        delegate?.connectionReadable(self)
        // Keep what the delegate left (a partial line, or everything if it paused).
        if let view, viewConsumed < view.count, case .open = state, pendingTransport == nil {
            keep(UnsafeRawBufferPointer(rebasing: view[viewConsumed...]))
        }
        view = nil
        viewConsumed = 0
        checkInputLimit()
    }

    /// Copies bytes the delegate left unconsumed into the connection's own storage (empty before).
    private func keep(_ rest: UnsafeRawBufferPointer) {
        guard rest.count > 0 else { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(rest.count, 512), alignment: 1)
        UnsafeMutableRawBufferPointer(rebasing: buffer[0..<rest.count]).copyMemory(from: rest)
        storage = buffer
        storageStart = 0
        storageEnd = rest.count
    }

    func deliverStored() {
        let before = bufferedInputBytes
        delegate?.connectionReadable(self)
        if bufferedInputBytes == before { checkInputLimit() }
    }

    private func checkInputLimit() {
        if case .open = state, storageEnd - storageStart >= maxInputBytes { finalize(.inputLimitExceeded) }
    }

    /// Compacts/grows own storage; returns free bytes (0 when at maxInputBytes).
    private func prepareStorageRoom() -> Int {
        guard let current = storage else { return 0 }
        let used = storageEnd - storageStart
        if storageStart > 0 {
            if used > 0, let base = current.baseAddress {
                memmove(base, base + storageStart, used)
            }
            storageStart = 0
            storageEnd = used
        }
        if current.count - used < 512 && current.count < maxInputBytes {
            let bigger = UnsafeMutableRawBufferPointer.allocate(byteCount: min(maxInputBytes, current.count * 2), alignment: 1)
            UnsafeMutableRawBufferPointer(rebasing: bigger[0..<used]).copyMemory(from: UnsafeRawBufferPointer(rebasing: current[0..<used]))
            current.deallocate()
            storage = bigger
        }
        guard let storage else { return 0 }
        return min(storage.count, maxInputBytes) - storageEnd
    }

    private func releaseStorage() {
        storage?.deallocate()
        storage = nil
        storageStart = 0
        storageEnd = 0
    }

    /// Drives a transport that speaks first once, before the next epoll_wait (so after the owner
    /// has set the delegate): a TLS client sends its ClientHello from inside `read`.
    func kickTransport() {
        transportKickPending = true
        enqueueRead()
    }

    func enqueueRead() {
        // Closed: nothing is delivered any more, and the loop may be gone (see `loop`).
        guard !inReadQueue, !isClosed else { return }
        inReadQueue = true
        loop.readQueue.append(self)
    }

    /// From the loop before epoll_wait: stored bytes after resumeReading, or TLS-buffered plaintext.
    func deliverQueued() {
        inReadQueue = false
        guard case .open = state, readingAllowed else { return }
        if transportKickPending || transport.hasBufferedInput {
            guard admitHandshakeStep() else { return }
            transportKickPending = false
            readFromTransport()
        } else if bufferedInputBytes > 0 {
            deliverStored()
        }
    }

    // MARK: interests and close

    func updateInterest() {
        var events: UInt32 = 0
        if case .open = state, readingAllowed, !peerEOF {
            events |= Epoll.input | Epoll.readHangUp
        }
        // A deferred handshake waits for its turn in the loop's queue, not for epoll: level-
        // triggered readiness would report it again at every epoll_wait. Only a hang-up is
        // watched meanwhile.
        if isHandshakeDeferred {
            events = Epoll.readHangUp
        } else {
            if outputBlocked || transportNeeds.contains(.writable) { events |= Epoll.output }
            if transportNeeds.contains(.readable) { events |= Epoll.input }
        }
        guard events != registeredEvents, !isClosed else { return }
        registeredEvents = events
        do {
            try loop.modify(fd: fd, events: events)
        } catch let error as SyscallError {
            finalize(.error(error))
        } catch {}
    }

    /// Closes now, or once queued output is written when flushFirst (reading stops at once).
    /// A server-side handshake still running (`Transport.handshakeStepPending`) closes now even
    /// with flushFirst: the client could read the reply only after the handshake, which is the
    /// expensive part (a refusal at accept must stay cheap under a handshake flood).
    public func close(flushFirst: Bool) {
        close(reason: .local, flushFirst: flushFirst)
    }

    func close(reason: CloseReason, flushFirst: Bool) {
        guard case .open = state else { return }
        if flushFirst && !output.isEmpty && !transport.handshakeStepPending {
            // No epoll_ctl(MOD) to drop EPOLLIN here: the flush runs before the next
            // epoll_wait and usually writes everything (then `finalize` closes the descriptor,
            // which takes it out of epoll). Only a flush that the kernel stops updates the
            // interest (`flush`, wouldBlock); until then input events are ignored (not open).
            state = .closing(reason)
            enqueueFlush()
        } else {
            finalize(reason)
        }
    }

    /// The loop is being freed with this connection still open (a program or test that
    /// stopped its loop without closing everything): mark it closed without callbacks and drop
    /// the delegate, so no cycle through it outlives the loop and no later call reaches the
    /// loop (`loop` is `unowned(unsafe)`). The descriptor stays open, as before: its owner may
    /// still read the connection's `fd`.
    func detachFromLoop() {
        if isClosed { return }
        state = .closed
        idleTimer = nil  // the loop's timer table goes with it
        output.release(to: &loop.chunkPool)
        releaseStorage()
        preamble = nil
        delegate = nil
    }

    func finalize(_ reason: CloseReason) {
        if isClosed { return }
        state = .closed
        loop.unregister(fd: fd, closing: closeRemovesRegistration)
        transport.willClose(fd: fd)
        closeDescriptor(fd)
        if let idleTimer { loop.cancelTimer(idleTimer) }
        idleTimer = nil
        output.release(to: &loop.chunkPool)
        releaseStorage()
        preamble = nil  // its closure may hold the owner
        let delegate = self.delegate
        self.delegate = nil
        delegate?.connectionClosed(self, reason: reason)
        if isHandshakeDeferred {
            // Still in the loop's handshake queue until its turn comes: keep only this object
            // there, not the TLS session (about 49 KB after a ClientHello), so connections
            // that send a ClientHello and reset under a flood cost next to nothing meanwhile.
            transport = PlainTransport()
        }
    }
}
