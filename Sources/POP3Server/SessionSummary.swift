import ByteCodec
import Glibc
import Logging
import POP3
import Reactor

/// What a session's summary line (`session end`, Dovecot's `pop3_logout_format`) says.
///
/// Written two ways with the same text: formatted straight into the pending bytes of
/// `LogBatch` when the process logs through `StderrLogHandler` (`SessionEndLog`; issue 17:
/// building the swift-log metadata dictionary, sorting it and escaping every value as a
/// `String` cost some 88k instructions per session, 13 % of a whole session), or as swift-log
/// metadata (`metadata`) for any other log handler (the tests' recorders). A unit test holds
/// the two to the same octets (`SessionEndLineTests`).
struct SessionSummary {
    /// The client as log lines name it (`POP3Connection.clientName`).
    enum Client {
        /// The socket's peer: formatted without a `String` (`SocketAddress.appendDescription`).
        case peer(SocketAddress)
        /// The PROXY header's source (or the balancer), `ProxiedClient.clientName`.
        case named(String)
    }

    var connectionID: UInt64
    var client: Client
    var counters: SessionCounters
    /// The session's length, ms (truncated).
    var durationMilliseconds: Int
    var reason: EndReason
    /// `Session.user`: nil when the session never named one.
    var user: String?
    /// `ProxiedClient.summaryMetadata` behind a balancer.
    var proxy: Logger.Metadata?

    /// The fields as swift-log metadata (the line as any log handler gets it).
    ///
    /// Dovecot's pop3_logout_format fields, each one `key=value` token (no space or comma in
    /// a value): top=, retr=, del= as count/octets; size= and uidl_change= describe the
    /// maildrop at login and are `-` for a session that never logged in.
    var metadata: Logger.Metadata {
        let c = counters
        let clientText: String
        switch client {
        case .peer(let address): clientText = "\(address)"
        case .named(let name): clientText = name
        }
        var summary: Logger.Metadata = [
            "connection.id": "\(connectionID)",
            "client": "\(clientText)",
            "commands": "\(c.commands)",
            "top": "\(c.topCount)/\(c.topOctets)",
            "retr": "\(c.messagesRetrieved)/\(c.octetsRetrieved)",
            "del": "\(c.messagesDeleted)/\(c.octetsDeleted)",
            "size": "\(c.maildropOctetsAtLogin.map { "\($0)" } ?? "-")",
            "uidl_change": "\(c.uidlChange.map { "\($0)" } ?? "-")",
            "duration": "\(durationMilliseconds)ms",
            "reason": "\(reason)",
        ]
        if let user { summary.setUserName(user.utf8) } else { summary["user"] = "-" }
        if let proxy { summary.merge(proxy) { $1 } }
        return summary
    }

    /// Appends ` key=value` for every field, sorted by key and merged with the handler's own
    /// fields (`worker=`), exactly as `StderrLogHandler.render` writes `metadata`: keys in
    /// `String` order (ASCII keys: octet order), a field of the event replacing a handler's of
    /// the same key, values escaped by `LogEscaping.value`.
    func appendFields(to out: inout [UInt8], handlerFields: [LogField]) {
        let c = counters
        var fields = FieldMerger(handlerFields)
        fields.key("client", &out)
        switch client {
        case .peer(let address):
            // An address's text is digits, dots, colons and brackets: a token as it is.
            address.appendDescription(to: &out)
        case .named(let name):
            LogEscaping.appendValue(name, to: &out)
        }
        fields.key("commands", &out)
        out.appendDecimal(c.commands)
        fields.key("connection.id", &out)
        out.appendDecimal(connectionID)
        fields.key("del", &out)
        out.appendPair(c.messagesDeleted, c.octetsDeleted)
        fields.key("duration", &out)
        out.appendDecimal(durationMilliseconds)
        out.append(UInt8(ascii: "m"))
        out.append(UInt8(ascii: "s"))
        if let proxy {
            // Behind a balancer (rare): its fields as the handler escapes any value.
            for (key, value) in proxy.sorted(by: { $0.key < $1.key }) {
                fields.key(key, &out)
                out.append(contentsOf: StderrLogHandler.escaped(value).utf8)
            }
        }
        fields.key("reason", &out)
        LogEscaping.appendValue(reason.description, to: &out)
        fields.key("retr", &out)
        out.appendPair(c.messagesRetrieved, c.octetsRetrieved)
        fields.key("size", &out)
        if let size = c.maildropOctetsAtLogin { out.appendDecimal(size) } else { out.append(UInt8(ascii: "-")) }
        fields.key("top", &out)
        out.appendPair(c.topCount, c.topOctets)
        fields.key("uidl_change", &out)
        if let change = c.uidlChange {
            out.appendDecimal(change.count)
            out.append(UInt8(ascii: "/"))
            out.appendHex(UInt64(change.hash), minimumDigits: 8)  // as `UIDLChange.description`
        } else {
            out.append(UInt8(ascii: "-"))
        }
        fields.key("user", &out)
        guard var user else {
            out.append(UInt8(ascii: "-"))
            fields.finish(&out)
            return
        }
        let truncatedFrom: Int? = user.withUTF8 { name in
            guard name.count > LoggedOctets.maxOctets else {
                LogEscaping.appendValue(name, to: &out)
                return nil
            }
            let logged = LoggedOctets(name)
            logged.octets.withUnsafeBufferPointer { LogEscaping.appendValue($0, to: &out) }
            return logged.isTruncated ? logged.fullCount : nil
        }
        if let truncatedFrom {
            fields.key("user.truncated", &out)
            out.appendDecimal(truncatedFrom)
        }
        fields.finish(&out)
    }
}

/// One field of a log handler's own metadata (`worker=N`), escaped once.
struct LogField {
    /// The key's octets, for ordering.
    let key: [UInt8]
    /// ` key=value` as the line writes it.
    let text: [UInt8]

    init(key: String, value: Logger.Metadata.Value) {
        self.key = Array(key.utf8)
        text = Array((" " + LogEscaping.text(key) + "=" + StderrLogHandler.escaped(value)).utf8)
    }
}

/// Writes the event's keys in order and slips the handler's fields in where they sort.
private struct FieldMerger {
    let handler: [LogField]
    var next = 0

    init(_ handler: [LogField]) { self.handler = handler }

    /// Handler fields sorting before `key`, then ` key=`; a handler field of the same key is
    /// dropped (the event's value wins, as `render`'s merge).
    mutating func key(_ key: StaticString, _ out: inout [UInt8]) {
        key.withUTF8Buffer { self.key($0, &out) }
    }

    mutating func key(_ key: String, _ out: inout [UInt8]) {
        var key = key
        key.withUTF8 { self.key($0, &out) }
    }

    mutating func key(_ key: UnsafeBufferPointer<UInt8>, _ out: inout [UInt8]) {
        while next < handler.count {
            let order = handler[next].key.withUnsafeBufferPointer { compare($0, key) }
            if order > 0 { break }
            if order < 0 { out.append(contentsOf: handler[next].text) }
            next += 1
            if order == 0 { break }
        }
        out.append(0x20)
        out.append(contentsOf: key)
        out.append(UInt8(ascii: "="))
    }

    mutating func finish(_ out: inout [UInt8]) {
        while next < handler.count {
            out.append(contentsOf: handler[next].text)
            next += 1
        }
    }

    /// Octet order: negative, zero or positive.
    private func compare(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int {
        for i in 0..<min(a.count, b.count) where a[i] != b[i] {
            return a[i] < b[i] ? -1 : 1
        }
        return a.count - b.count
    }
}

/// Writes the session-end line (and a balancer's health-check end): straight into
/// `LogBatch.standardError` when the logger's handler is `StderrLogHandler`, else through
/// the logger as metadata.
struct SessionEndLog {
    /// The process's handler, when the fast path can write what it would.
    private let stderr: StderrLogHandler?
    /// Its own metadata (`worker=N`), escaped once, in key order.
    private let handlerFields: [LogField]
    private let batch: LogBatch

    init(logger: Logger, batch: LogBatch = .standardError) {
        self.batch = batch
        // Keys outside ASCII would need `String` order rather than octet order: no fast path
        // (pop3d's only handler key is `worker`).
        if let handler = logger.handler as? StderrLogHandler,
           handler.metadata.keys.allSatisfy({ $0.utf8.allSatisfy { $0 < 0x80 } }) {
            stderr = handler
            handlerFields = handler.metadata.sorted { $0.key < $1.key }.map { LogField(key: $0.key, value: $0.value) }
        } else {
            stderr = nil
            handlerFields = []
        }
    }

    /// Logs `summary` with `message` at `level` (filtered by the logger's level, as swift-log).
    func log(_ summary: SessionSummary, message: StaticString, level: Logger.Level, logger: Logger) {
        guard let stderr else {
            logger.log(level: level, "\(message)", metadata: summary.metadata)
            return
        }
        guard stderr.logLevel <= level else { return }
        var now = timespec()
        if !stderr.journal { clock_gettime(CLOCK_REALTIME, &now) }
        batch.append { out, timestamps in
            Self.appendLine(summary, message: message, level: level, journal: stderr.journal, time: now,
                            handlerFields: handlerFields, timestamps: &timestamps, to: &out)
        }
    }

    /// One whole line with its "\n", as `StderrLogHandler.log` writes it: the journal
    /// priority or the timestamp, the level, the message, the fields.
    static func appendLine(_ summary: SessionSummary, message: StaticString, level: Logger.Level, journal: Bool,
                           time: timespec, handlerFields: [LogField], timestamps: inout TimestampCache,
                           to out: inout [UInt8]) {
        if journal {
            out.append(UInt8(ascii: "<"))
            out.appendDecimal(StderrLogHandler.priority(level))
            out.append(UInt8(ascii: ">"))
        } else {
            timestamps.append(time, to: &out)
            out.append(0x20)
        }
        let levelText: StaticString
        switch level {  // `"\(level)"`, without building a String
        case .trace: levelText = "trace "
        case .debug: levelText = "debug "
        case .info: levelText = "info "
        case .notice: levelText = "notice "
        case .warning: levelText = "warning "
        case .error: levelText = "error "
        case .critical: levelText = "critical "
        }
        levelText.withUTF8Buffer { out.append(contentsOf: $0) }
        // The messages are literals without anything to escape (`LogEscaping.text`).
        message.withUTF8Buffer { out.append(contentsOf: $0) }
        summary.appendFields(to: &out, handlerFields: handlerFields)
        out.append(0x0A)
    }
}

extension Array where Element == UInt8 {
    /// `count/octets`.
    mutating func appendPair(_ count: Int, _ octets: Int) {
        appendDecimal(count)
        append(UInt8(ascii: "/"))
        appendDecimal(octets)
    }
}

extension LogEscaping {
    /// Appends `value(_:)`'s text of `bytes` without building a `String` when nothing needs
    /// quoting (the usual case).
    static func appendValue(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        if needsQuotes(bytes) {
            out.append(UInt8(ascii: "\""))
            appendEscaped(bytes, quoting: true, to: &out)
            out.append(UInt8(ascii: "\""))
        } else {
            out.append(contentsOf: bytes)
        }
    }

    static func appendValue(_ value: String, to out: inout [UInt8]) {
        var value = value
        value.withUTF8 { appendValue($0, to: &out) }
    }
}

/// What `POP3Connection.metadata` is made of, captured without building it: for a log line
/// that may come later, from a closure, and usually never (UPDATE's failures).
struct LogIdentity {
    let connectionID: UInt64
    let user: String?
    let peer: SocketAddress
    let proxy: ProxiedClient?

    init(_ connection: POP3Connection) {
        connectionID = connection.connection.id
        user = connection.session.user
        peer = connection.connection.peer
        proxy = connection.proxy
    }

    /// `POP3Connection.metadata` as it was when captured: the same fields, built the same way.
    var metadata: Logger.Metadata {
        var fields: Logger.Metadata = ["connection.id": "\(connectionID)"]
        if let user { fields.setUserName(user.utf8) } else { fields["user"] = "-" }
        fields["client"] = "\(proxy?.clientName ?? "\(peer)")"
        if let proxy { fields["proxy"] = "\(proxy.balancer)" }
        return fields
    }
}
