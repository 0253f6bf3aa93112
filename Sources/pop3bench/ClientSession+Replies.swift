import Digests
import POP3
import Reactor

/// Reply handling: every reply is checked against the command that asked for it.
extension ClientSession {
    func handle(_ event: ReplyEvent, _ input: UnsafeRawBufferPointer) {
        switch event {
        case .needMore:
            return
        case .malformed:
            failAndClose(.protocolError, "malformed reply during \(step)")
        case .challenge:
            failAndClose(.protocolError, "unexpected SASL challenge during \(step)")
        case .status(let ok, _, let text):
            status(ok: ok, text: UnsafeRawBufferPointer(rebasing: input[text]))
        case .line(let range, let complete):
            bodyLine(UnsafeRawBufferPointer(rebasing: input[range]), complete: complete)
        case .end(let octets, let lines):
            end(octets: octets, lines: lines)
        }
    }

    private func elapsed() -> UInt64 {
        let now = monotonicNanoseconds()
        defer { commandStart = now }
        return now &- commandStart
    }

    private func status(ok: Bool, text: UnsafeRawBufferPointer) {
        switch step {
        case .greeting:
            guard ok else { return failAndClose(.greeting, "greeting was -ERR") }
            stats.record(.connect, nanoseconds: elapsed())
            if config.scenario.logsIn && config.auth == .apop {
                // RFC 1939 §7: the digest covers the greeting's timestamp, angle brackets included.
                guard let open = text.firstIndex(of: UInt8(ascii: "<")),
                      let close = text[open...].firstIndex(of: UInt8(ascii: ">"))
                else { return failAndClose(.greeting, "greeting has no APOP timestamp") }
                apopTimestamp.removeAll(keepingCapacity: true)
                apopTimestamp.append(contentsOf: text[open...close])
            }
            if config.transport == .stls {
                tlsStart = commandStart
                command("STLS", multiLine: false, next: .stls)
            } else {
                afterGreeting()
            }
        case .stls:
            guard ok else { fail(.tls, "STLS answered -ERR"); return quit() }
            if let connection, !startTLS(on: connection) { closeAfterInput = true }
        case .user:
            guard ok else { fail(.auth, "USER refused"); return quit() }
            send(config.credentials[credential].passLine)
            step = .pass
        case .pass, .apop, .plain:
            guard ok else { fail(.auth, "login refused for \(config.credentials[credential].user)"); return quit() }
            stats.record(.login, nanoseconds: elapsed())
            afterLogin()
        case .stat:
            guard ok, let count = Self.leadingNumber(text) else { fail(.protocolError, "bad STAT reply"); return quit() }
            stats.record(.stat, nanoseconds: elapsed())
            messageCount = count
            if listSizes.count < count { listSizes = [Int](repeating: -1, count: count) }
            for i in 0..<count { listSizes[i] = -1 }
            command("LIST", multiLine: true, next: .list)
        case .listOne:
            guard ok, let (number, size) = Self.twoNumbers(text), number == config.message else {
                fail(.protocolError, "bad LIST \(config.message) reply"); return quit()
            }
            stats.record(.list, nanoseconds: elapsed())
            messageCount = max(messageCount, number)
            if listSizes.count < number { listSizes = [Int](repeating: -1, count: number) }
            listSizes[number - 1] = size
            retrPlan.removeAll(keepingCapacity: true)
            for _ in 0..<config.commandsPerSession { retrPlan.append(number) }
            retrIndex = 0
            nextRetr()
        case .list, .uidl, .retr:
            // +OK opens the body (the parser was told it is multi-line); -ERR ends the command.
            if !ok { fail(.protocolError, "\(step) answered -ERR"); quit() }
        case .dele:
            guard ok else { fail(.protocolError, "DELE answered -ERR"); return quit() }
            stats.record(.dele, nanoseconds: elapsed())
            nextRetr()
        case .noop:
            noopReply(ok: ok)
        case .quit:
            if ok { stats.record(.quit, nanoseconds: elapsed()) } else { fail(.protocolError, "QUIT answered -ERR") }
            step = .done
            closeAfterInput = true
        case .idle, .handshake, .hold, .done:
            failAndClose(.protocolError, "unsolicited reply during \(step)")
        }
    }

    private func bodyLine(_ line: UnsafeRawBufferPointer, complete: Bool) {
        guard step == .list else { return }  // UIDL lines are counted by the parser; RETR octets too
        guard complete, let (number, size) = Self.twoNumbers(line), number >= 1, number <= messageCount else {
            fail(.protocolError, "bad LIST line")
            return
        }
        listSizes[number - 1] = size
    }

    private func end(octets: Int, lines: Int) {
        switch step {
        case .list:
            stats.record(.list, nanoseconds: elapsed())
            if lines != messageCount { fail(.protocolError, "LIST has \(lines) lines, STAT said \(messageCount)") }
            command("UIDL", multiLine: true, next: .uidl)
        case .uidl:
            stats.record(.uidl, nanoseconds: elapsed())
            if lines != messageCount { fail(.uidlMismatch, "UIDL has \(lines) lines, STAT said \(messageCount)") }
            planRetrs()
            nextRetr()
        case .retr:
            stats.record(.retr, nanoseconds: elapsed())
            stats.retrOctets += octets
            let number = retrPlan[retrIndex - 1]
            let expected = number <= listSizes.count ? listSizes[number - 1] : -1
            if octets != expected { fail(.sizeMismatch, "RETR \(number): \(octets) octets, LIST said \(expected)") }
            if config.dele && config.scenario == .session {
                command("DELE", number, multiLine: false, next: .dele)
            } else {
                nextRetr()
            }
        default:
            failAndClose(.protocolError, "unexpected multi-line end during \(step)")
        }
    }

    // MARK: sending

    func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { connection?.write($0) }
    }

    func command(_ keyword: StaticString, multiLine: Bool, next: Step) {
        connection?.write(keyword)
        connection?.write("\r\n")
        parser.expect(multiLine: multiLine)
        step = next
    }

    /// `KEYWORD n CRLF` through the slot's reused command buffer (no String, and after the
    /// first command no allocation, per command).
    func command(_ keyword: StaticString, _ number: Int, multiLine: Bool, next: Step) {
        if let connection {
            commandBuffer.bytes.removeAll(keepingCapacity: true)
            CommandWriter.write(keyword, number, out: &commandBuffer)
            commandBuffer.bytes.withUnsafeBytes { connection.write($0) }
        }
        parser.expect(multiLine: multiLine)
        step = next
    }

    /// After the greeting (and, with STLS, the handshake): log in, or just QUIT.
    func afterGreeting() {
        if config.scenario.logsIn { login() } else { quit() }
    }

    private func login() {
        let credential = config.credentials[self.credential]
        switch config.auth {
        case .user:
            send(credential.userLine)
            step = .user
        case .plain:
            send(credential.plainLine)
            step = .plain
        case .apop:
            let digest = Digest.md5.hexHash(apopTimestamp, Array(credential.password.utf8))
            send(Array("APOP \(credential.user) \(digest)\r\n".utf8))
            step = .apop
        }
        parser.expect(multiLine: false)
    }

    private func afterLogin() {
        switch config.scenario {
        case .session:
            command("STAT", multiLine: false, next: .stat)
        case .retrBig:
            command("LIST", config.message, multiLine: false, next: .listOne)
        case .noop:
            commandsLeftToSend = config.commandsPerSession
            repliesLeft = config.commandsPerSession
            sendHead = 0
            sendTail = 0
            step = .noop
            parser.expect(multiLine: false)
            while commandsLeftToSend > 0 && repliesLeft - commandsLeftToSend < config.depth { sendNoop() }
            if repliesLeft == 0 { quit() }
        case .idle:
            step = .hold
            connection?.idleTimeout = 0
            holdTimer = bench.loop.scheduleTimer(after: UInt64(config.hold * 1e9)) { [weak self] in
                guard let self, self.step == .hold else { return }
                self.holdTimer = nil
                self.connection?.idleTimeout = self.config.replyTimeoutNanoseconds
                self.quit()
            }
        case .connect:
            quit()
        }
    }

    private func sendNoop() {
        connection?.write("NOOP\r\n")
        sendTimes[sendHead] = monotonicNanoseconds()
        sendHead = (sendHead + 1) % sendTimes.count
        commandsLeftToSend -= 1
    }

    private func noopReply(ok: Bool) {
        let now = monotonicNanoseconds()
        let sent = sendTimes[sendTail]
        sendTail = (sendTail + 1) % sendTimes.count
        repliesLeft -= 1
        if ok { stats.record(.noop, nanoseconds: now &- sent) } else { fail(.protocolError, "NOOP answered -ERR") }
        if commandsLeftToSend > 0 { sendNoop() }
        if repliesLeft == 0 {
            commandStart = now
            quit()
        }
    }

    /// Every message, or `sample` of them spread evenly (deterministic, so runs compare).
    private func planRetrs() {
        retrPlan.removeAll(keepingCapacity: true)
        retrIndex = 0
        let count = messageCount
        if let sample = config.sample, sample < count {
            for j in 0..<sample { retrPlan.append(1 + j * count / sample) }
        } else if count > 0 {
            for n in 1...count { retrPlan.append(n) }
        }
    }

    private func nextRetr() {
        guard retrIndex < retrPlan.count else { return quit() }
        let number = retrPlan[retrIndex]
        retrIndex += 1
        command("RETR", number, multiLine: true, next: .retr)
    }

    func quit() {
        command("QUIT", multiLine: false, next: .quit)
    }

    // MARK: parsing numbers without building strings

    /// The decimal number at the start of `text` (STAT's "n size").
    static func leadingNumber(_ text: UnsafeRawBufferPointer) -> Int? {
        number(text, from: 0)?.value
    }

    /// "n size" as in LIST replies (RFC 1939 §5); extra text after them is allowed.
    static func twoNumbers(_ text: UnsafeRawBufferPointer) -> (Int, Int)? {
        guard let first = number(text, from: 0), first.end < text.count, text[first.end] == 0x20,
              let second = number(text, from: first.end + 1) else { return nil }
        return (first.value, second.value)
    }

    /// Most digits accepted in a number: more would overflow an Int.
    static let maxDigits = 18

    private static func number(_ text: UnsafeRawBufferPointer, from start: Int) -> (value: Int, end: Int)? {
        var index = start
        var value = 0
        while index < text.count, text[index] >= 0x30, text[index] <= 0x39, index - start < maxDigits {
            value = value * 10 + Int(text[index] - 0x30)
            index += 1
        }
        guard index > start, index == text.count || text[index] == 0x20 else { return nil }
        return (value, index)
    }
}
