import CShim
import Glibc
import SystemCalls

extension Connection {
    /// Bytes queued and not yet accepted by the kernel.
    public var pendingOutputBytes: Int { output.count }

    /// True at or above the high-water mark: producers should stop until `connectionWritable`.
    /// From then on the connection also reads no input (`isOutputThrottled`) until the output
    /// drains below the low-water mark.
    public var isOutputFull: Bool { output.count >= outputHighWater }

    /// Queues bytes; they are written just before the next epoll_wait. Ignored once closing.
    /// Reaching the high-water mark throttles input (see `isOutputThrottled`).
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard case .open = state, bytes.count > 0 else { return }
        output.append(bytes, pool: &loop.chunkPool)
        if output.count >= outputHighWater { throttleOutput() }
        enqueueFlush()
    }

    /// Free space at the end of the output queue (part of one pooled chunk, never empty), for a
    /// producer that encodes straight into the queue instead of into a buffer of its own: the
    /// RETR path saves one copy of every byte this way. Fill a prefix, then `commitOutput` its
    /// length before any other write to this connection. Empty once the connection is closing.
    public func reserveOutput() -> UnsafeMutableRawBufferPointer {
        guard case .open = state else { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        return output.reserve(pool: &loop.chunkPool)
    }

    /// Queues the first `count` bytes of the space `reserveOutput` returned.
    public func commitOutput(_ count: Int) {
        guard case .open = state, count > 0 else { return }
        output.commit(count)
        if output.count >= outputHighWater { throttleOutput() }
        enqueueFlush()
    }

    /// Queues a copy of `bytes`, as `write(_: UnsafeRawBufferPointer)` does.
    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Queues the UTF-8 octets of a literal (no copy into a `String` first).
    public func write(_ text: StaticString) {
        write(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Queues the UTF-8 octets of `text`.
    public func write(_ text: String) {
        var text = text
        text.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    func enqueueFlush() {
        guard !inFlushQueue else { return }
        inFlushQueue = true
        loop.flushQueue.append(self)
    }

    /// Writes until the queue is empty or the kernel refuses; EPOLLOUT is armed only in the latter case.
    func flush() {
        inFlushQueue = false
        if isClosed { return }
        var progressed = false
        while !output.isEmpty {
            let result: TransportResult
            do {
                result = try output.withIOVecs { try transport.write(fd: fd, $0) }
            } catch let error as SyscallError {
                finalize(error.errno == ECONNRESET || error.errno == EPIPE ? .reset : .error(error))
                return
            } catch {
                finalize(.error(SyscallError(errno: EPROTO, call: "transport.write")))
                return
            }
            switch result {
            case .bytes(let n):
                output.consume(n, pool: &loop.chunkPool)
                progressed = true
            case .wouldBlock(let needs):
                // EPOLLOUT only when the kernel refused bytes: a TLS write waiting for the peer's
                // handshake bytes (WANT_READ) would otherwise spin on an always-writable socket.
                let blocked = needs.contains(.writable)
                if blocked && output.count > maxBlockedOutputBytes {
                    // The peer reads nothing and keeps sending: close rather than hold its replies.
                    finalize(.outputLimitExceeded)
                    return
                }
                if blocked != outputBlocked || needs.contains(.readable) != transportNeeds.contains(.readable) {
                    outputBlocked = blocked
                    if needs.contains(.readable) { transportNeeds.insert(.readable) } else { transportNeeds.remove(.readable) }
                    updateInterest()
                } else if case .closing = state {
                    // `close` left EPOLLIN registered, counting on this flush to finish; it
                    // did not, so stop reading now (level-triggered input would wake every turn).
                    updateInterest()
                }
                if progressed {
                    noteActivity()
                    outputDrained()
                }
                return
            case .endOfStream:
                finalize(.peerClosed)
                return
            }
        }
        if progressed { noteActivity() }
        if outputBlocked || transportNeeds.contains(.readable) {
            outputBlocked = false
            transportNeeds.remove(.readable)
            updateInterest()
        }
        if case .closing(let reason) = state {
            finalize(reason)
            return
        }
        // A TLS write may have pulled a record into the library's buffer, invisible to epoll.
        if transport.hasBufferedInput, readingAllowed { enqueueRead() }
        if let next = pendingTransport {
            installTransport(next)
        }
        outputDrained()
    }

    /// Below the low-water mark after a flush made progress (whole or partial): input is read
    /// again and a producer parked at the high-water mark refills.
    private func outputDrained() {
        guard output.count < outputLowWater, !isClosed else { return }
        unthrottleOutput()
        if notifyWhenDrained {
            notifyWhenDrained = false
            delegate?.connectionWritable(self)
        }
    }

    /// Switches transports mid-stream (STLS, RFC 2595 section 4): the new transport takes over once
    /// the output queued so far (the plaintext "+OK") is written. Input not yet consumed is
    /// discarded and reading pauses until then, so bytes the client pipelined after STLS are never
    /// treated as protected (the CVE-2011-0411 class of bugs).
    public func switchTransport(to newTransport: Transport) {
        guard case .open = state else { return }
        if let view { viewConsumed = view.count }
        storageStart = storageEnd
        pendingTransport = newTransport
        updateInterest()
        enqueueFlush()
    }

    private func installTransport(_ next: Transport) {
        transport = next
        pendingTransport = nil
        storageStart = 0
        storageEnd = 0
        storage?.deallocate()
        storage = nil
        updateInterest()
        // Server side, the handshake starts with the client's ClientHello, which epoll reports;
        // client side, the transport has to send that ClientHello first.
        if transport.speaksFirst {
            kickTransport()
        } else if transport.hasBufferedInput {
            enqueueRead()
        }
    }
}

extension EventLoop {
    /// Round limit so producers refilling in connectionWritable cannot starve epoll.
    static let maxFlushRounds = 4

    func flushConnections() {
        var rounds = 0
        while !flushQueue.isEmpty && rounds < Self.maxFlushRounds {
            rounds += 1
            // The queue's storage is swapped with a spare one, not copied: emptying an array
            // whose storage a copy still holds allocates new storage, once per turn (issue 17).
            // Connections queued by these flushes go to the other, now empty, array.
            swap(&flushQueue, &flushBatch)
            for connection in flushBatch { connection.flush() }
            flushBatch.removeAll(keepingCapacity: true)
        }
    }

    func deliverQueuedReads() {
        guard !readQueue.isEmpty else { return }
        swap(&readQueue, &readBatch)  // as in `flushConnections`
        for connection in readBatch { connection.deliverQueued() }
        readBatch.removeAll(keepingCapacity: true)
    }

    var hasQueuedWork: Bool { !readQueue.isEmpty || !flushQueue.isEmpty || hasDeferredHandshakes }
}
