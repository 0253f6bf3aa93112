/// The POP3 session state machine (RFC 1939 §3-§6 with RFC 2449, 2595, 3206, 5034).
///
/// Pure: no I/O. The glue feeds it complete lines (see `LineParser`) and events
/// (login finished, TLS started, update finished), it writes replies into a
/// caller-provided `ReplySink` and returns a `SessionAction` telling the glue
/// what to do next. Protocol errors are replies, never traps (ARCHITECTURE.md convention 6).
public struct Session: Sendable {
    enum Phase: Equatable, Sendable {
        case authorization
        /// Waiting for the glue's `loginFinished` (or `saslChallenge`): no input is read.
        case authenticating
        /// Inside `AUTH`: the next line is a client response (RFC 5034 §4).
        case sasl(SASLState)
        case transaction
        /// QUIT seen in TRANSACTION: waiting for `updateFinished`.
        case update
        case closed
    }

    enum SASLState: Equatable, Sendable {
        case plain
        case loginUser
        case loginPassword(user: String)
        case cramMD5(challenge: String)
        case relay(SASLMechanism, index: Int)
    }

    struct SASLRelay: Equatable, Sendable {
        var mechanism: SASLMechanism
        var index: Int
    }

    struct PendingMessage: Equatable, Sendable {
        var index: Int
        var bodyLines: Int?
    }

    enum Producer: Equatable, Sendable {
        case list(next: Int)
        case uidl(next: Int)
    }

    /// The settings the session was made with (`tlsStarted()` changes the session's own TLS
    /// state, not `config.tlsActive`).
    public internal(set) var config: SessionConfig
    var phase: Phase = .authorization
    var tlsActive: Bool
    /// Name given by USER, waiting for PASS.
    var pendingUser: String?
    /// User of the last credentials handed to the glue (for the log line).
    public internal(set) var user: String?
    var producer: Producer?
    /// RETR/TOP handed to the glue as `.openMessage`, waiting for `messageOpened`.
    var pendingMessage: PendingMessage?
    var sizes: [Int] = []
    var uids: [String] = []
    var deleted: [Bool] = []
    var deletedCount = 0
    /// RFC 1725 `LAST`: the highest message number (1-based) accessed, 0 for none; at login
    /// the highest one the maildrop marks seen (`MaildropListing.lastSeen`, Dovecot's rule),
    /// raised by RETR, put back to `lastAtLogin` by RSET.
    var lastAccessed = 0
    var lastAtLogin = 0
    /// With `LAST` on: the messages RETR sent since login or the last RSET, to be marked seen
    /// in UPDATE (`messagesToMarkSeen`); empty (never allocated) with `LAST` off.
    var retrieved: [Bool] = []
    /// Exact sums (see Session+Octets.swift): `Int128` cannot overflow on any listing.
    var deletedOctets: Int128 = 0
    var totalOctets: Int128 = 0
    var cramAttempts = 0
    /// A relayed SASL exchange waiting for the glue: mechanism and index of the
    /// client message handed out last.
    var relay: SASLRelay?
    /// Figures for the session-end log line (commands, RETR/TOP/DELE counts and octets, failures).
    public internal(set) var counters = SessionCounters()
    /// The keyword of the last line `counters.commands` counted; nil when that line named no
    /// known command (the glue's per-command metric).
    public private(set) var lastCommand: CommandKeyword?

    /// A session in the AUTHORIZATION state; nothing is written until the glue calls `start(out:)`.
    public init(config: SessionConfig) {
        self.config = config
        self.tlsActive = config.tlsActive
    }

    // MARK: - State the glue reads

    /// Limit for the next input line: commands keep RFC 2449's 255 octets, SASL
    /// client responses may be longer (RFC 5034 §4).
    public var maxLineLength: Int {
        if case .sasl = phase { return LineParser.maxSASLResponseLength }
        return LineParser.maxCommandLength
    }

    /// True once a login succeeded (stays true after QUIT, for the log line).
    public internal(set) var isAuthenticated = false

    /// True once the session has ended (QUIT, the idle timeout, too many bad commands or failed
    /// logins, a refused PROXY line): the glue flushes and closes.
    public var isClosed: Bool { phase == .closed }

    /// USER/PASS, APOP and plaintext SASL allowed on this connection right now.
    var plaintextAllowed: Bool { config.plaintextAuthAllowed || tlsActive }

    var stlsOffered: Bool { config.stlsAvailable && !tlsActive && phase == .authorization }

    // MARK: - Entry points

    /// APOP can be used on this connection right now: enabled, and allowed like the
    /// other password logins (refused with them while plaintext auth is refused).
    var apopOffered: Bool { config.apopEnabled && plaintextAllowed }

    /// Writes the greeting (RFC 1939 §4), with the APOP timestamp (§7) only when APOP
    /// is offered: a timestamp in the greeting tells clients APOP will work, and clients
    /// such as fdm and s-nail then use nothing else.
    public mutating func start(out: inout some ReplySink) {
        out.write("+OK ")
        out.write(string: config.banner)
        if apopOffered {
            out.write(" ")
            out.write(string: config.apopTimestamp)
        }
        out.write("\r\n")
    }

    /// Handles one complete input line (terminator already stripped).
    public mutating func handleLine(_ line: UnsafeRawBufferPointer, out: inout some ReplySink) -> SessionAction {
        switch phase {
        case .closed:
            return .close
        case .authenticating, .update:
            // The glue stops reading in these phases; a line here is its bug, answered safely.
            out.write("-ERR busy\r\n")
            return .none
        case .sasl(let state):
            return handleSASLResponse(line, state: state, out: &out)
        case .authorization, .transaction:
            break
        }
        if producer != nil || pendingMessage != nil {
            out.write("-ERR busy\r\n")
            return .none
        }
        counters.commands += 1
        lastCommand = nil
        if ByteScan.containsControl(line) {
            return badCommand("-ERR invalid characters in command\r\n", out: &out)
        }
        var keywordEnd = 0
        while keywordEnd < line.count && line[keywordEnd] != 0x20 { keywordEnd += 1 }
        // LAST (RFC 1725) exists only with `pop3_enable_last`; otherwise it is unknown, as in
        // RFC 1939, counted and labelled like any unknown word.
        guard let keyword = CommandKeyword.parse(UnsafeRawBufferPointer(rebasing: line[0..<keywordEnd])),
              keyword != .last || config.lastEnabled else {
            if phase == .authorization, Self.isProxyHeader(UnsafeRawBufferPointer(rebasing: line[0..<keywordEnd])) {
                // A PROXY protocol v1 header from a peer the server does not take headers from
                // (HAProxy's proxy-protocol.txt: a receiver must never honour one it did not
                // ask for): closed, so that it cannot be retried as a way to spoof an address.
                // (A v2 header reads as empty lines, a control octet, then QUIT: closed too.)
                out.write("-ERR PROXY header not accepted from this address\r\n")
                phase = .closed
                return .close
            }
            return badCommand("-ERR unknown command\r\n", out: &out)
        }
        lastCommand = keyword
        let table = phase == .authorization ? CommandKeyword.authorizationTable : CommandKeyword.transactionTable
        guard table.contains(keyword) else {
            return badCommand("-ERR command not valid in this state\r\n", out: &out)
        }
        let arguments = CommandArguments(line, after: keywordEnd)
        switch keyword {
        case .user: return user(line, arguments, out: &out)
        case .pass: return pass(line, arguments, out: &out)
        case .apop: return apop(line, arguments, out: &out)
        case .auth: return auth(line, arguments, out: &out)
        case .stls: return stls(arguments, out: &out)
        case .capa: return capa(arguments, out: &out)
        case .quit: return quit(arguments, out: &out)
        case .stat: return stat(arguments, out: &out)
        case .list: return list(line, arguments, out: &out)
        case .uidl: return uidl(line, arguments, out: &out)
        case .retr: return retr(line, arguments, out: &out)
        case .top: return top(line, arguments, out: &out)
        case .dele: return dele(line, arguments, out: &out)
        case .noop: return noop(arguments, out: &out)
        case .rset: return rset(arguments, out: &out)
        case .last: return last(arguments, out: &out)
        }
    }

    /// The parser reported `.tooLong`: RFC 2449 §4 allows rejecting it.
    public mutating func lineTooLong(out: inout some ReplySink) -> SessionAction {
        switch phase {
        case .closed:
            return .close
        case .sasl:
            // An over-long client response cannot be decoded: the exchange fails (RFC 5034 §4).
            phase = .authorization
            return badCommand("-ERR authentication response too long\r\n", out: &out)
        default:
            counters.commands += 1
            lastCommand = nil
            return badCommand("-ERR line too long\r\n", out: &out)
        }
    }

    /// The STLS handshake succeeded: STLS is no longer offered (RFC 2595 §4) and
    /// plaintext mechanisms become allowed.
    public mutating func tlsStarted() {
        tlsActive = true
    }

    /// The idle timer fired (RFC 1939 §3: autologout timer); never enters UPDATE.
    public mutating func idleTimedOut(out: inout some ReplySink) {
        guard phase != .closed else { return }
        out.write("-ERR autologout: idle timeout\r\n")
        phase = .closed
    }

    /// The glue removed the messages of `.commitDeletions`; `failed` of them, of `failedOctets`
    /// listed octets together, could not be.
    public mutating func updateFinished(failed: Int, failedOctets: Int = 0, out: inout some ReplySink) -> SessionAction {
        guard phase == .update else {
            phase = .closed
            return .close
        }
        phase = .closed
        counters.messagesDeleted = max(0, deletedCount - failed)
        counters.octetsDeleted = Int(clamping: max(0, deletedOctets - Int128(max(0, failedOctets))))
        if failed > 0 {
            // RFC 1939 §6: an -ERR here means some deleted messages were not removed.
            out.write("-ERR [SYS/TEMP] some deleted messages not removed\r\n")
        } else {
            out.write("+OK POP3 server signing off (")
            out.write(decimal: sizes.count - deletedCount)
            out.write(" messages left)\r\n")
        }
        return .close
    }

    // MARK: - Shared helpers

    /// Counts a bad command; at `maxBadCommands` answers with a final `-ERR` and closes.
    mutating func badCommand(_ reply: StaticString, out: inout some ReplySink) -> SessionAction {
        counters.badCommands += 1
        if counters.badCommands >= config.maxBadCommands {
            out.write("-ERR too many bad commands, closing connection\r\n")
            phase = .closed
            return .close
        }
        out.write(reply)
        return .none
    }

    /// The keyword is exactly `PROXY` (the v1 signature is case-sensitive).
    static func isProxyHeader(_ keyword: UnsafeRawBufferPointer) -> Bool {
        keyword.count == 5 && keyword.elementsEqual("PROXY".utf8)
    }

    /// Commands without arguments (STAT, NOOP, RSET, QUIT, STLS, CAPA) reject extras.
    mutating func noArguments(_ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction? {
        guard arguments.count == 0 else {
            return badCommand("-ERR this command takes no arguments\r\n", out: &out)
        }
        return nil
    }
}
