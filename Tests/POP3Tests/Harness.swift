import POP3
import TestSupport

/// A fake glue: runs the parser and the session over scripted input, performs
/// every action against an in-memory maildrop, and records the output. The fuzz target's
/// `Driver` (Fuzz/Sources/fuzz-session) is its model-checking twin; it says why not shared.
struct Harness {
    static let timestamp = "<1234.1.1700000000@test.example>"
    static let messages: [[UInt8]] = [
        Array("Subject: one\n\nHello\n.dot line\n".utf8),
        Array("Subject: two\r\nX: y\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n".utf8),
        Array("Subject: three\n\nno newline at end".utf8),
    ]
    /// Sizes as RETR sends them: CRLF line ends, before dot-stuffing.
    static let sizes = [34, 46, 37]
    static let uids = ["uid-one", "uid-two", "uid-three"]

    var parser = LineParser()
    var session: Session
    var buffer: [UInt8] = []
    var out = ByteArraySink()
    var closed = false
    var deletions: [[Int]] = []
    /// What the fake UPDATE could not remove: messages and their listed octets.
    var updateFailures = (count: 0, octets: 0)
    /// Every `.authenticate` request, in order.
    var requests: [AuthRequest] = []
    var produceChunk = 8
    /// What the fake maildrop answers to `.openMessage`.
    var openOutcome = MessageOpenOutcome.opened
    /// Whether a TLS session can be created for STLS.
    var tlsAvailable = true

    init(config: SessionConfig = Harness.config()) {
        session = Session(config: config)
        session.start(out: &out)
    }

    static func config(plaintext: Bool = true, stls: Bool = false) -> SessionConfig {
        SessionConfig(
            banner: "ready", apopTimestamp: timestamp, implementation: "pop3d test",
            stlsAvailable: stls, plaintextAuthAllowed: plaintext)
    }

    /// Feeds bytes in chunks of `chunk` (nil = all at once).
    mutating func feed(_ text: String, chunk: Int? = nil) {
        let bytes = Array(text.utf8)
        feed(bytes: bytes, chunk: chunk)
    }

    mutating func feed(bytes: [UInt8], chunk: Int? = nil) {
        for piece in bytes.pieces(of: chunk) where !closed {
            buffer += piece
            pump()
        }
    }

    mutating func pump() {
        while !closed {
            parser.maxLineLength = session.maxLineLength
            let (event, consumed) = buffer.withUnsafeBytes { parser.next($0) }
            let action: SessionAction
            switch event {
            case .needMore:
                buffer.removeFirst(consumed)
                return
            case .line(let range):
                let line = Array(buffer[range])
                buffer.removeFirst(consumed)
                action = line.withUnsafeBytes { session.handleLine($0, out: &out) }
            case .tooLong:
                buffer.removeFirst(consumed)
                action = session.lineTooLong(out: &out)
            }
            perform(action)
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
                if user == "busy" {
                    outcome = .inUse
                } else if user == "broken" {
                    outcome = .temporaryFailure("disk\r\nfull")
                } else {
                    outcome = user == "alice" && password == Array("secret".utf8) ? listing : .authFailed
                }
            case .apop(let user, let digest, let stamp):
                outcome = user == "alice" && digest == String(repeating: "ab", count: 16) && stamp == Self.timestamp
                    ? listing : .authFailed
            case .cramMD5(let user, let digest, _):
                outcome = user == "alice" && digest == String(repeating: "cd", count: 16) ? listing : .authFailed
            case .undecodable:
                outcome = .authFailed
            }
            requests.append(request)
            perform(session.loginFinished(outcome, out: &out))
        case .saslStep(let step):
            switch step.index {
            case 0 where step.message == Array("n,,n=alice,r=abc".utf8):
                session.saslChallenge(Array("r=abcdef,s=c2FsdA==,i=4096".utf8), out: &out)
            case 1 where step.message == Array("proof-ok".utf8):
                session.saslChallenge(Array("v=ok".utf8), out: &out)
            case 2 where step.message.isEmpty:
                perform(session.loginFinished(listing, out: &out))
            default:
                perform(session.loginFinished(.authFailed, out: &out))
            }
        case .produce:
            while !session.produceMore(out: &out, maxBytes: produceChunk) {}
        case .openMessage:
            perform(session.messageOpened(openOutcome, out: &out))
        case .streamMessage(let index, let bodyLines):
            var encoder = MessageEncoder(bodyLines: bodyLines)
            let message = Self.messages[index]
            var start = 0
            while start < message.count && !encoder.isComplete {
                let end = min(message.count, start + 5)
                Array(message[start..<end]).withUnsafeBytes { encoder.encode($0, out: &out) }
                start = end
            }
            encoder.finish(out: &out)
            session.messageStreamed(encoder)
        case .startTLS:
            session.stlsReady(tlsAvailable, out: &out)
            guard tlsAvailable else { return }
            // RFC 2595 §4: plaintext buffered after STLS is thrown away.
            buffer.removeAll()
            parser.reset()
            session.tlsStarted()
        case .commitDeletions(let indices):
            deletions.append(indices)
            perform(session.updateFinished(failed: updateFailures.count, failedOctets: updateFailures.octets, out: &out))
        }
    }

    /// What the fake maildrop says is the highest message marked seen (RFC 1725 LAST).
    var lastSeen = 0

    var listing: LoginOutcome { .success(MaildropListing(sizes: Self.sizes, uids: Self.uids, lastSeen: lastSeen)) }

    /// Output after the greeting.
    var replies: String {
        let text = out.text
        guard let end = text.firstRange(of: "\r\n") else { return text }
        return String(text[end.upperBound...])
    }
}
