import Glibc
import Reactor

/// One metrics connection: parses request heads, answers them in order.
final class MetricsClient: ConnectionDelegate {
    unowned let endpoint: MetricsEndpoint
    let connection: Connection
    private var parser = HTTPRequestParser()
    /// The deadline of the request head being received (`headTimeoutNanoseconds`).
    private var headTimer: TimerID?
    /// A response that closes the connection has been written: nothing more is parsed.
    private var closing = false
    /// Input read and dropped after that response (`MetricsEndpoint.maxLingerBytes`).
    private var dropped = 0

    /// Accept order (`MetricsEndpoint.maxConnections` closes the oldest).
    let serial: UInt64

    init(endpoint: MetricsEndpoint, connection: Connection, serial: UInt64) {
        self.serial = serial
        self.endpoint = endpoint
        self.connection = connection
        // Room for a whole head: the parser, not the connection's input limit, decides
        // (and answers 431) when a head is too long.
        connection.maxInputBytes = endpoint.limits.maxHeadBytes + 1
        connection.idleTimeout = endpoint.limits.keepAliveTimeoutNanoseconds
        connection.delegate = self
        armHeadTimer()
    }

    func connectionReadable(_ connection: Connection) { serve() }

    /// Output drained after a throttle: answer what is still buffered.
    func connectionWritable(_ connection: Connection) { serve() }

    func connectionClosed(_ connection: Connection, reason: CloseReason) {
        if let headTimer { endpoint.loop.cancelTimer(headTimer) }
        headTimer = nil
        endpoint.logger.debug("metrics connection closed", metadata: [
            "connection.id": "\(connection.id)", "reason": "\(reason)",
        ])
        endpoint.clientClosed(self)
    }

    /// Answers the complete requests buffered, in order, up to `maxRequestsPerTurn`.
    private func serve() {
        if closing { return dropInput() }
        var answered = 0
        while !closing && !connection.isClosed {
            if answered == MetricsEndpoint.maxRequestsPerTurn {
                connection.redeliverBufferedInput()
                return
            }
            // Replies the client does not read stop the reading of its requests (the
            // reactor's output throttle); the rest is answered once they drain.
            if connection.isOutputThrottled { return }
            var result = HTTPRequestParser.Result.needMore
            let maxHead = endpoint.limits.maxHeadBytes
            connection.withInput { bytes in
                result = parser.parse(bytes, maxHeadBytes: maxHead)
                if case .request(_, let consumed) = result { return consumed }
                return 0
            }
            switch result {
            case .needMore:
                if connection.bufferedInputBytes > 0 && headTimer == nil { armHeadTimer() }
                return
            case .request(let head, _):
                cancelHeadTimer()
                answered += 1
                respond(to: head)
            case .failed(let failure):
                cancelHeadTimer()
                refuse(failure)
            }
        }
    }

    private func respond(to request: HTTPRequestHead) {
        let status = MetricsRoute.status(for: request)
        let endpoint = self.endpoint
        endpoint.body.removeAll(keepingCapacity: true)
        if status == .ok {
            endpoint.render(&endpoint.body)
        } else {
            endpoint.body.append(contentsOf: status.text.utf8)
            endpoint.body.append(10)
        }
        let connectionHeader: HTTPResponseHead.ConnectionHeader =
            !request.keepAlive ? .close : (request.minorVersion == 0 ? .keepAlive : .none)
        endpoint.head.removeAll(keepingCapacity: true)
        HTTPResponseHead(status: status, contentType: status == .ok ? MetricsEndpoint.contentType : HTTPResponseHead.textType,
                         contentLength: endpoint.body.count, connection: connectionHeader,
                         allow: status == .methodNotAllowed)
            .write(into: &endpoint.head, date: endpoint.dateCache.text(now: time(nil)))
        connection.write(endpoint.head)
        if request.method != .head { connection.write(endpoint.body) }
        if !request.keepAlive { finish() }
    }

    /// A request whose framing cannot be trusted: its status, then close.
    private func refuse(_ failure: HTTPRequestParser.Failure) {
        let status: HTTPStatus
        switch failure {
        case .malformed: status = .badRequest
        case .headTooLarge: status = .headerFieldsTooLarge
        case .versionNotSupported: status = .versionNotSupported
        case .contentNotAccepted: status = .contentTooLarge
        }
        endpoint.logger.debug("metrics request refused", metadata: [
            "connection.id": "\(connection.id)", "status": "\(status.rawValue)",
        ])
        writeClosingError(status)
    }

    private func writeClosingError(_ status: HTTPStatus) {
        var text = Array(status.text.utf8)
        text.append(10)
        endpoint.head.removeAll(keepingCapacity: true)
        HTTPResponseHead(status: status, contentType: HTTPResponseHead.textType, contentLength: text.count,
                         connection: .close, allow: false)
            .write(into: &endpoint.head, date: endpoint.dateCache.text(now: time(nil)))
        connection.write(endpoint.head)
        connection.write(text)
        finish()
    }

    /// Stops parsing and closes once the reply is written: at once when no input is waiting,
    /// else after lingering (`MetricsEndpoint.lingerNanoseconds`).
    private func finish() {
        closing = true
        cancelHeadTimer()
        guard connection.bufferedInputBytes > 0 else {
            connection.close(flushFirst: true)
            return
        }
        dropInput()
        guard !connection.isClosed else { return }
        headTimer = endpoint.loop.scheduleTimer(after: MetricsEndpoint.lingerNanoseconds) { [weak self] in
            guard let self else { return }
            self.headTimer = nil
            self.connection.close(flushFirst: true)
        }
    }

    /// Lingering: drops what arrived; closes once `maxLingerBytes` have been dropped. The
    /// peer's close ends it earlier (the connection closes itself then).
    private func dropInput() {
        dropped += connection.withInput { bytes in bytes.count }
        if dropped > MetricsEndpoint.maxLingerBytes { connection.close(flushFirst: true) }
    }

    private func armHeadTimer() {
        headTimer = endpoint.loop.scheduleTimer(after: endpoint.limits.headTimeoutNanoseconds) { [weak self] in
            guard let self else { return }
            self.headTimer = nil
            self.headTimedOut()
        }
    }

    private func cancelHeadTimer() {
        if let headTimer { endpoint.loop.cancelTimer(headTimer) }
        headTimer = nil
    }

    /// RFC 9110 §15.5.9: 408 when part of a request came; a connection that sent nothing is
    /// closed without a word (a client may have opened it only to have one ready).
    private func headTimedOut() {
        guard !closing, !connection.isClosed else { return }
        if connection.bufferedInputBytes > 0 {
            endpoint.logger.debug("metrics request head timed out", metadata: ["connection.id": "\(connection.id)"])
            writeClosingError(.requestTimeout)
        } else {
            closing = true
            connection.close(flushFirst: false)
        }
    }
}
