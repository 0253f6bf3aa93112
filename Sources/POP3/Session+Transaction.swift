/// TRANSACTION state commands (RFC 1939 §5) and QUIT in both states (§4, §6).
extension Session {
    /// Resolves a message-number argument: decimal, 1...count, not deleted.
    /// On failure writes the `-ERR` and returns the action in `.failure`.
    mutating func message(
        _ line: UnsafeRawBufferPointer, _ range: Range<Int>, out: inout some ReplySink
    ) -> Result<Int, ActionBox> {
        guard let number = DecimalArgument.parse(line, range) else {
            return .failure(ActionBox(badCommand("-ERR invalid message number\r\n", out: &out)))
        }
        guard number >= 1 && number <= sizes.count else {
            out.write("-ERR no such message\r\n")
            return .failure(ActionBox(.none))
        }
        guard !deleted[number - 1] else {
            out.write("-ERR message ")
            out.write(decimal: number)
            out.write(" already deleted\r\n")
            return .failure(ActionBox(.none))
        }
        return .success(number - 1)
    }

    mutating func stat(_ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        if let failure = noArguments(arguments, out: &out) { return failure }
        out.write("+OK ")
        writeDropSize(out: &out)
        out.write("\r\n")
        return .none
    }

    /// "count octets" of the undeleted messages (RFC 1939 §5 STAT drop listing).
    func writeDropSize(out: inout some ReplySink) {
        out.write(decimal: sizes.count - deletedCount)
        out.write(" ")
        out.write(decimal: remainingOctets)
    }

    mutating func list(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        switch arguments.count {
        case 0:
            out.write("+OK ")
            out.write(decimal: sizes.count - deletedCount)
            out.write(" messages (")
            out.write(decimal: remainingOctets)
            out.write(" octets)\r\n")
            producer = .list(next: 0)
            return .produce
        case 1:
            switch message(line, arguments.first, out: &out) {
            case .failure(let box): return box.action
            case .success(let index):
                out.write("+OK ")
                out.write(decimal: index + 1)
                out.write(" ")
                out.write(decimal: sizes[index])
                out.write("\r\n")
                return .none
            }
        default:
            return badCommand("-ERR too many arguments\r\n", out: &out)
        }
    }

    mutating func uidl(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        switch arguments.count {
        case 0:
            out.write("+OK unique-id listing follows\r\n")
            producer = .uidl(next: 0)
            return .produce
        case 1:
            switch message(line, arguments.first, out: &out) {
            case .failure(let box): return box.action
            case .success(let index):
                out.write("+OK ")
                out.write(decimal: index + 1)
                out.write(" ")
                out.write(string: uids[index])
                out.write("\r\n")
                return .none
            }
        default:
            return badCommand("-ERR too many arguments\r\n", out: &out)
        }
    }

    /// Continues a LIST or UIDL listing; writes at least one line per call and
    /// stops once `maxBytes` are written. Returns true when the terminator is out.
    public mutating func produceMore(out: inout some ReplySink, maxBytes: Int) -> Bool {
        guard let current = producer else { return true }
        // Bytes are counted by hand rather than through a wrapping sink: moving
        // `out` into a wrapper and back could copy a value-type sink's buffer.
        var written = 0
        var index: Int
        switch current {
        case .list(let next), .uidl(let next): index = next
        }
        while index < sizes.count {
            if written >= maxBytes {
                switch current {
                case .list: producer = .list(next: index)
                case .uidl: producer = .uidl(next: index)
                }
                return false
            }
            if !deleted[index] {
                out.write(decimal: index + 1)
                out.write(" ")
                written += Self.decimalLength(index + 1) + 3
                if case .list = current {
                    out.write(decimal: sizes[index])
                    written += Self.decimalLength(sizes[index])
                } else {
                    out.write(string: uids[index])
                    written += uids[index].utf8.count
                }
                out.write("\r\n")
            }
            index += 1
        }
        out.write(".\r\n")
        producer = nil
        return true
    }

    static func decimalLength(_ value: Int) -> Int {
        var length = value < 0 ? 2 : 1
        var rest = value.magnitude / 10
        while rest != 0 {
            length += 1
            rest /= 10
        }
        return length
    }

    mutating func retr(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        guard arguments.count == 1 else {
            return badCommand("-ERR usage: RETR msg\r\n", out: &out)
        }
        switch message(line, arguments.first, out: &out) {
        case .failure(let box): return box.action
        case .success(let index):
            // No reply yet: the glue opens the file first (`messageOpened`).
            pendingMessage = PendingMessage(index: index, bodyLines: nil)
            return .openMessage(index: index, bodyLines: nil)
        }
    }

    mutating func top(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        guard arguments.count == 2 else {
            return badCommand("-ERR usage: TOP msg n\r\n", out: &out)
        }
        // Parse the line count first: a bad one is a syntax error whatever the message.
        guard let lines = DecimalArgument.parse(line, arguments.second) else {
            return badCommand("-ERR invalid line count\r\n", out: &out)
        }
        switch message(line, arguments.first, out: &out) {
        case .failure(let box): return box.action
        case .success(let index):
            pendingMessage = PendingMessage(index: index, bodyLines: lines)
            return .openMessage(index: index, bodyLines: lines)
        }
    }

    /// The glue's answer to `.openMessage`: writes the reply RETR/TOP owe. `.opened` writes
    /// `+OK` and returns `.streamMessage`; a message that is gone or unreadable gets an
    /// `-ERR [SYS/TEMP]` (RFC 3206 §4: the condition is the server's, a later try may work)
    /// and the session stays in TRANSACTION, so its DELEs still reach UPDATE at QUIT.
    public mutating func messageOpened(_ outcome: MessageOpenOutcome, out: inout some ReplySink) -> SessionAction {
        guard let pending = pendingMessage, phase == .transaction else {
            out.write("-ERR no message requested\r\n")
            return .none
        }
        pendingMessage = nil
        let index = pending.index
        switch outcome {
        case .opened:
            if let lines = pending.bodyLines {
                counters.topCount += 1  // its octets when the stream ends (`messageStreamed`)
                out.write("+OK top of message follows\r\n")
                return .streamMessage(index: index, bodyLines: lines)
            }
            counters.messagesRetrieved += 1
            counters.octetsRetrieved = Self.saturatingAdd(counters.octetsRetrieved, sizes[index])
            out.write("+OK ")
            out.write(decimal: sizes[index])
            out.write(" octets\r\n")
            return .streamMessage(index: index, bodyLines: nil)
        case .gone:
            out.write("-ERR [SYS/TEMP] message ")
            out.write(decimal: index + 1)
            out.write(" was removed by another program\r\n")
            return .none
        case .unreadable:
            out.write("-ERR [SYS/TEMP] message ")
            out.write(decimal: index + 1)
            out.write(" cannot be read\r\n")
            return .none
        }
    }

    /// The glue sent a whole RETR/TOP stream, terminator included: TOP's octets are counted
    /// now, as `encoder.contentOctets` (the listing's unit: CRLF line ends, no stuffing dots).
    /// RETR's were counted at its `+OK` (its listed size, which the stream equals). One call
    /// per message, no allocation.
    public mutating func messageStreamed(_ encoder: MessageEncoder) {
        guard encoder.bodyLines != nil else { return }
        counters.topOctets = Self.saturatingAdd(counters.topOctets, max(0, encoder.contentOctets))
    }

    mutating func dele(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        guard arguments.count == 1 else {
            return badCommand("-ERR usage: DELE msg\r\n", out: &out)
        }
        switch message(line, arguments.first, out: &out) {
        case .failure(let box): return box.action
        case .success(let index):
            deleted[index] = true
            deletedCount += 1
            deletedOctets += Int128(sizes[index])
            out.write("+OK message ")
            out.write(decimal: index + 1)
            out.write(" deleted\r\n")
            return .none
        }
    }

    mutating func noop(_ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        if let failure = noArguments(arguments, out: &out) { return failure }
        out.write("+OK\r\n")
        return .none
    }

    mutating func rset(_ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        if let failure = noArguments(arguments, out: &out) { return failure }
        for index in deleted.indices { deleted[index] = false }
        deletedCount = 0
        deletedOctets = 0
        out.write("+OK maildrop has ")
        out.write(decimal: sizes.count)
        out.write(" messages (")
        out.write(decimal: maildropOctets)
        out.write(" octets)\r\n")
        return .none
    }

    mutating func quit(_ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        if let failure = noArguments(arguments, out: &out) { return failure }
        if phase == .transaction {
            // RFC 1939 §6: the UPDATE state; the glue removes the messages, then replies.
            phase = .update
            var indices: [Int] = []
            indices.reserveCapacity(deletedCount)
            for index in deleted.indices where deleted[index] { indices.append(index) }
            return .commitDeletions(indices)
        }
        // RFC 1939 §4: QUIT in AUTHORIZATION closes without entering UPDATE.
        out.write("+OK POP3 server signing off\r\n")
        phase = .closed
        return .close
    }
}

/// Carries an action out of a `Result` failure (Result needs an Error type).
struct ActionBox: Error {
    let action: SessionAction
    init(_ action: SessionAction) { self.action = action }
}

