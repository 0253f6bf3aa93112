import FuzzSupport
import Glibc
import ByteCodec
import POP3

// The command-line parser with the session state machine behind it: a fuzzed byte stream
// drives a whole `POP3.Session` (greeting, AUTHORIZATION with USER/PASS, APOP, every SASL
// mechanism, STLS, TRANSACTION, UPDATE) against an in-memory maildrop, as the glue does
// (`LineParser` → `Session.handleLine` → the action performed → the session's next event).
//
// Input: octet 0 picks the session's configuration, octet 1 the chunk sizes, the rest is what
// the client sends. The stream is run twice, whole and in chunks of 1-16 octets, and the
// replies must be the same octets (the parser is resumable: ARCHITECTURE.md convention 4).
//
// Invariants checked on every reply (RFC 1939 §3, RFC 2449 §4, RFC 5034 §4):
// - every input line (or over-long line) gets a reply, and nothing else is written;
// - the output is CRLF-framed: no bare CR, no bare LF, nothing after the last CRLF;
// - a status line starts `+OK` or `-ERR` (then end or a space), or is a SASL challenge `+ `,
//   and a status line is at most 512 octets with its CRLF;
// - a `+OK` to CAPA, RETR, TOP, and to LIST, UIDL, AUTH without an argument, is multi-line:
//   body lines dot-stuffed, then `.`; every other reply is one line;
// - the model agrees: RETR sends the octets LIST announces, LIST/UIDL/STAT list exactly the
//   messages not deleted, QUIT commits exactly the DELEs not undone by RSET.

/// The in-memory maildrop every successful login gets.
enum Drop {
    /// Messages with the shapes the wire-size rule cares about: LF and CRLF ends, a lone
    /// dot, lines starting with dots, a bare CR, no final line end, an empty file, no header
    /// end, a NUL, a line longer than a status line may be.
    static let messages: [[UInt8]] = [
        Array("Subject: one\n\nHello\n.dot line\n".utf8),
        Array("Subject: two\r\nX: y\r\n\r\nbody 1\r\n.\r\nbody 3\r\n".utf8),
        Array("Subject: three\n\nno newline at end".utf8),
        [],
        Array("X: mac\rY: z\r\r..two dots\r.\r\u{0}nul\n".utf8) + Array(repeating: UInt8(ascii: "x"), count: 700) + [0x0A],
        Array("Only: headers\nNo: end".utf8),
    ]
    /// Unique-ids (RFC 1939 §7: 1-70 octets in 0x21-0x7E).
    static let uids = ["uid-one", "uid-two", "uid-three", "uid-empty", "uid-mac", "uid-headers", "uid-gone", "uid-huge"]
    /// Two messages the "storage" cannot open, with sizes whose sum passes `Int.max`, so STAT
    /// and LIST sums must neither trap nor wrap (they clamp).
    static let goneSize = 1234
    static let hugeSize = Int.max - 10

    /// The listing's sizes under each combination of workarounds (by raw value).
    static let sizeTable: [[Int]] = (0..<4).map { sizes(ClientWorkarounds(rawValue: UInt8($0))) }

    /// What `MessageEncoder` sends for each message under `workarounds` (the listing's sizes).
    static func sizes(_ workarounds: ClientWorkarounds) -> [Int] {
        var sizes = messages.map { message -> Int in
            var encoder = MessageEncoder(bodyLines: nil, workarounds: workarounds)
            var sink = ByteArraySink()
            message.withUnsafeBytes { encoder.encode($0, out: &sink) }
            encoder.finish(out: &sink)
            return encoder.contentOctets
        }
        sizes += [goneSize, hugeSize]
        return sizes
    }
}

/// What the fuzzer's configuration octet selects.
struct Options {
    var config: SessionConfig
    var lastSeen: Int
    /// Chunk sizes: input fed to the parser (nil: whole), message file reads, LIST/UIDL bytes.
    var encoderChunk: Int
    var produceChunk: Int
    var unreadableRetr: Bool

    init(_ octet: UInt8, _ chunking: UInt8) {
        var workarounds: ClientWorkarounds = []
        if octet & 0x20 != 0 { workarounds.insert(.oeNsEoh) }
        if octet & 0x40 != 0 { workarounds.insert(.outlookNoNuls) }
        let mechanisms: [[SASLMechanism]] = [SASLMechanism.allCases, [.plain, .login], [], [.cramMD5, .scramSHA256]]
        config = SessionConfig(
            banner: "fuzz ready", apopTimestamp: "<1234.1.1700000000@fuzz.example>",
            implementation: octet & 0x80 != 0 ? "pop3d fuzz" : nil,
            loginDelaySeconds: Int(octet & 0x10),
            stlsAvailable: octet & 0x01 != 0, tlsActive: octet & 0x02 != 0,
            plaintextAuthAllowed: octet & 0x04 != 0,
            saslMechanisms: mechanisms[Int(chunking >> 6)],
            apopEnabled: octet & 0x08 != 0, lastEnabled: octet & 0x10 != 0,
            clientWorkarounds: workarounds)
        lastSeen = Int(chunking & 0x07)
        encoderChunk = 1 + Int((chunking >> 3) & 0x07) * 3
        produceChunk = 1 + Int(chunking & 0x38)
        unreadableRetr = octet & 0x80 != 0
    }
}

/// A fake glue: the parser, the session, the actions performed against `Drop`, and a model
/// of what the replies must say.
///
/// Alike by nature to `Tests/POP3Tests/Harness.swift` (and to the server's `POP3Connection`):
/// each performs the `SessionAction` contract, so each has the `LineParser` → `handleLine`
/// pump and a `switch` over the actions. Not shared: this package may use only pop3d's library
/// products (so the server never carries fuzzing or test code), a test target is none, and
/// this driver checks its model after every step where the harness only records.
struct Driver {
    let options: Options
    let sizes: [Int]
    var parser = LineParser()
    var session: Session
    var buffer: [UInt8] = []
    var out = ByteArraySink()
    var closed = false
    var tlsStarted = false
    /// The last reply was a SASL challenge: the next line is a client response.
    var inSASL = false
    /// The model: logged in, and which messages DELE marked.
    var loggedIn = false
    var deleted: [Bool]

    init(_ options: Options) {
        self.options = options
        sizes = Drop.sizeTable[Int(options.config.clientWorkarounds.rawValue & 3)]
        deleted = Array(repeating: false, count: sizes.count)
        session = Session(config: options.config)
        session.start(out: &out)
        let greeting = out.bytes
        check(greeting.starts(with: Array("+OK ".utf8)), "greeting \(show(greeting))")
        checkFraming(greeting[...], count: 1)
    }

    var listing: LoginOutcome {
        .success(MaildropListing(sizes: sizes, uids: Drop.uids, lastSeen: options.lastSeen))
    }

    mutating func feed(_ bytes: [UInt8], chunk: Int?) {
        let size = max(1, chunk ?? bytes.count)
        var start = 0
        while start < bytes.count && !closed {
            let end = min(bytes.count, start + size)
            buffer += bytes[start..<end]
            pump()
            start = end
        }
    }

    mutating func pump() {
        while !closed {
            parser.maxLineLength = session.maxLineLength
            let (event, consumed) = buffer.withUnsafeBytes { parser.next($0) }
            check(consumed >= 0 && consumed <= buffer.count, "consumed \(consumed) of \(buffer.count)")
            let mark = out.bytes.count
            let line: [UInt8]?
            let action: SessionAction
            switch event {
            case .needMore:
                buffer.removeFirst(consumed)
                return
            case .line(let range):
                check(range.lowerBound >= 0 && range.upperBound <= consumed && consumed <= buffer.count,
                      "line \(range) consumed \(consumed) of \(buffer.count)")
                let bytes = Array(buffer[range])
                check(!bytes.contains(0x0A), "a line holds LF: \(show(bytes))")
                buffer.removeFirst(consumed)
                line = bytes
                action = bytes.withUnsafeBytes { session.handleLine($0, out: &out) }
            case .tooLong:
                line = nil
                buffer.removeFirst(consumed)
                action = session.lineTooLong(out: &out)
            }
            let wasSASL = inSASL
            perform(action)
            verifyReply(Array(out.bytes[mark...]), line: line, saslResponse: wasSASL)
        }
    }

    mutating func perform(_ action: SessionAction) {
        switch action {
        case .none:
            break
        case .close:
            closed = true
        case .authenticate(let request):
            let outcome: LoginOutcome
            switch request {
            case .password(let user, let password, _):
                switch user {
                case "busy": outcome = .inUse
                case "delay": outcome = .loginDelay
                case "broken": outcome = .temporaryFailure("disk\r\nfull")
                case "perm": outcome = .permanentFailure("no\u{0}way\u{7F}")
                default: outcome = user == "alice" && password == Array("secret".utf8) ? listing : .authFailed
                }
            case .apop(let user, let digest, _):
                outcome = user == "alice" && digest == String(repeating: "ab", count: 16) ? listing : .authFailed
            case .cramMD5(let user, let digest, _):
                check(digest.utf8.count == 32, "CRAM-MD5 digest \(digest)")
                outcome = user == "alice" && digest == String(repeating: "cd", count: 16) ? listing : .authFailed
            case .undecodable:
                outcome = .authFailed
            }
            perform(session.loginFinished(outcome, out: &out))
        case .saslStep(let step):
            check(step.mechanism == .scramSHA256, "relayed \(step.mechanism)")
            switch step.index {
            case 0 where step.message.starts(with: Array("n,,n=alice,r=".utf8)):
                session.saslChallenge(Array("r=abcdef,s=c2FsdA==,i=4096".utf8), out: &out)
            case 1 where step.message == Array("proof-ok".utf8):
                session.saslChallenge(Array("v=ok".utf8), out: &out)
            case 2 where step.message.isEmpty:
                perform(session.loginFinished(listing, out: &out))
            default:
                perform(session.loginFinished(.authFailed, out: &out))
            }
        case .produce:
            var turns = 0
            while !session.produceMore(out: &out, maxBytes: options.produceChunk) {
                turns += 1
                check(turns <= 100_000, "produceMore never finishes")
            }
        case .openMessage(let index, _):
            check(loggedIn && index >= 0 && index < sizes.count, "openMessage(\(index))")
            let outcome: MessageOpenOutcome
            if index >= Drop.messages.count {
                outcome = index == Drop.messages.count ? .gone : .unreadable
            } else {
                outcome = options.unreadableRetr && index == 2 ? .unreadable : .opened
            }
            perform(session.messageOpened(outcome, out: &out))
        case .streamMessage(let index, let bodyLines):
            check(index >= 0 && index < Drop.messages.count, "streamMessage(\(index))")
            var encoder = MessageEncoder(bodyLines: bodyLines, workarounds: options.config.clientWorkarounds)
            let message = Drop.messages[index]
            var start = 0
            while start < message.count && !encoder.isComplete {
                let end = min(message.count, start + options.encoderChunk)
                message[start..<end].withUnsafeBytes { encoder.encode($0, out: &out) }
                start = end
            }
            encoder.finish(out: &out)
            session.messageStreamed(encoder)
        case .startTLS:
            session.stlsReady(true, out: &out)
            // RFC 2595 §4: plaintext buffered after STLS is thrown away; what the fuzzer sends
            // next would be TLS records, so the run ends here.
            tlsStarted = true
            closed = true
        case .commitDeletions(let indices):
            let expected = deleted.indices.filter { deleted[$0] }
            check(indices == expected, "UPDATE deletes \(indices), DELE marked \(expected)")
            perform(session.updateFinished(failed: 0, out: &out))
        }
    }

    // MARK: - What a reply must look like

    /// `chunk` is CRLF-framed: `count` lines (any number when nil), no bare CR or LF.
    @discardableResult
    func checkFraming(_ chunk: ArraySlice<UInt8>, count: Int?) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = chunk.startIndex
        var i = start
        while i < chunk.endIndex {
            let b = chunk[i]
            if b == 0x0D {
                check(i + 1 < chunk.endIndex && chunk[i + 1] == 0x0A, "bare CR in \(show(chunk))")
                lines.append(chunk[start..<i])
                i += 2
                start = i
                continue
            }
            check(b != 0x0A, "bare LF in \(show(chunk))")
            i += 1
        }
        check(start == chunk.endIndex, "output not ended by CRLF: \(show(chunk))")
        if let count { check(lines.count == count, "\(lines.count) lines, not \(count): \(show(chunk))") }
        return lines
    }

    /// The keyword (upper case) and the arguments of a command line, as `Session` splits it.
    static func command(_ line: [UInt8]) -> (String, [ArraySlice<UInt8>]) {
        let end = line.firstIndex(of: 0x20) ?? line.count
        let keyword = String(decoding: line[..<end], as: UTF8.self).uppercased()
        let arguments = line[end...].split(separator: 0x20)
        return (keyword, arguments)
    }

    static func decimal(_ bytes: some Collection<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 10, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(String(decoding: bytes, as: UTF8.self))
    }

    /// Octets a client gets from a multi-line body: stuffing removed, CRLF counted.
    static func bodyOctets(_ body: ArraySlice<ArraySlice<UInt8>>) -> Int {
        body.reduce(0) { $0 + $1.count + 2 - ($1.first == UInt8(ascii: ".") ? 1 : 0) }
    }

    var remaining: (count: Int, octets: Int) {
        var count = 0
        var octets: Int128 = 0
        for i in sizes.indices where !deleted[i] {
            count += 1
            octets += Int128(sizes[i])
        }
        return (count, Int(clamping: octets))
    }

    mutating func verifyReply(_ reply: [UInt8], line: [UInt8]?, saslResponse: Bool) {
        let context = "to \(line.map { show($0) } ?? "an over-long line")"
        check(!reply.isEmpty, "no reply \(context)")
        guard let end = indexOfCRLF(reply, from: 0) else { fail("reply without CRLF \(context): \(show(reply))") }
        let status = reply[..<end]
        check(end + 2 <= 512, "status line of \(end + 2) octets \(context)")
        let ok = status.starts(with: "+OK".utf8) && (status.count == 3 || status[3] == 0x20)
        let err = status.starts(with: "-ERR".utf8) && (status.count == 4 || status[4] == 0x20)
        let challenge = status.starts(with: "+ ".utf8)
        check(ok || err || challenge, "status line \(show(status)) \(context)")
        inSASL = challenge
        if challenge {
            checkFraming(reply[...], count: 1)
            check(Base64.decode(Array(status.dropFirst(2))) != nil, "challenge is not base64: \(show(status))")
            return
        }
        let wasLoggedIn = loggedIn
        if ok && status.starts(with: "+OK maildrop has ".utf8) {
            // The login reply, or RSET's (RFC 1939 §5 gives both this form).
            let isReset = !saslResponse && line.map { Self.command($0).0 } == "RSET"
            check(loggedIn == isReset, "\(show(status)) \(context), logged in: \(loggedIn)")
            loggedIn = true
            let total = Int(clamping: sizes.reduce(Int128(0)) { $0 + Int128($1) })
            check(status.elementsEqual("+OK maildrop has \(sizes.count) messages (\(total) octets)".utf8), "login \(show(status))")
        }
        guard let line, !saslResponse else {
            checkFraming(reply[...], count: 1)
            return
        }
        let (keyword, arguments) = Self.command(line)
        let multiLine = ok && (["CAPA", "RETR", "TOP"].contains(keyword)
                               || (["LIST", "UIDL", "AUTH"].contains(keyword) && arguments.isEmpty))
        guard multiLine else {
            checkFraming(reply[...], count: 1)
            guard ok, wasLoggedIn else { return }
            checkSingleLine(keyword, arguments, status)
            return
        }
        let lines = checkFraming(reply[...], count: nil)
        check(lines.count >= 2 && lines.last!.elementsEqual(".".utf8), "multi-line reply without its end \(context): \(show(reply))")
        let body = lines.dropFirst().dropLast()
        for bodyLine in body where bodyLine.first == UInt8(ascii: ".") {
            check(bodyLine.count >= 2 && bodyLine[bodyLine.startIndex + 1] == UInt8(ascii: "."),
                  "body line not dot-stuffed \(context): \(show(bodyLine))")
        }
        guard wasLoggedIn else { return }
        switch keyword {
        case "RETR":
            guard let n = arguments.first.flatMap(Self.decimal), n >= 1, n <= Drop.messages.count else {
                fail("RETR of a message that cannot be opened answered +OK \(context)")
            }
            check(status.elementsEqual("+OK \(sizes[n - 1]) octets".utf8), "RETR status \(show(status)), size \(sizes[n - 1])")
            check(Self.bodyOctets(body) == sizes[n - 1], "RETR \(n) sent \(Self.bodyOctets(body)) octets, LIST says \(sizes[n - 1])")
        case "LIST", "UIDL":
            let listed = sizes.indices.filter { !deleted[$0] }
            check(body.count == listed.count, "\(keyword) lists \(body.count) messages, \(listed.count) not deleted")
            for (bodyLine, index) in zip(body, listed) {
                let value = keyword == "LIST" ? String(sizes[index]) : Drop.uids[index]
                check(bodyLine.elementsEqual("\(index + 1) \(value)".utf8), "\(keyword) line \(show(bodyLine)) for message \(index + 1)")
            }
            if keyword == "LIST" {
                let (count, octets) = remaining
                check(status.elementsEqual("+OK \(count) messages (\(octets) octets)".utf8), "LIST status \(show(status))")
            }
        default:
            break
        }
    }

    /// The model's view of single-line `+OK` replies in TRANSACTION.
    mutating func checkSingleLine(_ keyword: String, _ arguments: [ArraySlice<UInt8>], _ status: ArraySlice<UInt8>) {
        switch keyword {
        case "DELE":
            guard let n = arguments.first.flatMap(Self.decimal), n >= 1, n <= sizes.count, !deleted[n - 1] else {
                fail("DELE \(arguments.map { show($0) }) answered +OK")
            }
            deleted[n - 1] = true
        case "RSET":
            deleted = Array(repeating: false, count: sizes.count)
        case "STAT":
            let (count, octets) = remaining
            check(status.elementsEqual("+OK \(count) \(octets)".utf8), "STAT \(show(status)), model \(count) \(octets)")
        case "LIST", "UIDL":
            guard let n = arguments.first.flatMap(Self.decimal), n >= 1, n <= sizes.count, !deleted[n - 1] else {
                fail("\(keyword) \(arguments.map { show($0) }) answered +OK")
            }
            let value = keyword == "LIST" ? String(sizes[n - 1]) : Drop.uids[n - 1]
            check(status.elementsEqual("+OK \(n) \(value)".utf8), "\(keyword) \(n): \(show(status))")
        case "QUIT":
            let left = remaining.count
            check(status.elementsEqual("+OK POP3 server signing off (\(left) messages left)".utf8), "QUIT \(show(status)), \(left) left")
        default:
            break
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSession(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var reader = FuzzReader(inputBytes(data, size))
    let options = Options(reader.byte(), reader.byte())
    let stream = reader.rest()
    var whole = Driver(options)
    whole.feed(stream, chunk: nil)
    let chunk = 1 + Int(stream.count % 16)
    var pieces = Driver(options)
    pieces.feed(stream, chunk: chunk)
    // STLS ends both runs at the same line (what follows would be TLS records).
    check(whole.out.bytes == pieces.out.bytes,
          "whole and \(chunk)-octet chunks differ:\n\(show(whole.out.bytes, limit: 2000))\n\(show(pieces.out.bytes, limit: 2000))")
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzSession))
