import Glibc
import Logging
import POP3
import Reactor
import Testing
import TestSupport
@testable import POP3Server

/// Issue 17 item 3: the session-end line is formatted straight into `LogBatch`'s bytes, not
/// through swift-log metadata. The octets must be exactly what `StderrLogHandler.render`
/// writes for the metadata the line had before (fields, order, escaping: the tests of the
/// observability and hostile-input issues grep them), on random and hostile values.
@Suite struct SessionEndLineTests {
    /// Hostile and ordinary text: controls, quotes, `=`, spaces, backslashes, C1, U+2028,
    /// multi-octet scalars, empty.
    static let pieces = [
        "alice", "", " ", "=", "\"", "\\", "\r\n", "\n", "\u{1B}[31m", "\u{0}", "\u{7F}", "\u{85}", "\u{2028}",
        "é", "日本", "😀", "user=root", "a b", "x", "@example.org", "\u{9B}", "\t",
    ]

    static func text(_ random: inout SplitMix64, maxPieces: Int = 6) -> String {
        (0..<Int.random(in: 0...maxPieces, using: &random)).map { _ in pieces.randomElement(using: &random)! }.joined()
    }

    static func int(_ random: inout SplitMix64) -> Int {
        switch Int.random(in: 0..<6, using: &random) {
        case 0: return 0
        case 1: return Int.max
        case 2: return Int.min
        case 3: return -Int.random(in: 1...1_000_000, using: &random)
        default: return Int.random(in: 0...Int(Int32.max), using: &random)
        }
    }

    static func address(_ random: inout SplitMix64) -> SocketAddress {
        var storage = sockaddr_storage()
        let port = UInt16.random(in: 0...UInt16.max, using: &random)
        withUnsafeMutableBytes(of: &storage) { raw in
            switch Int.random(in: 0..<4, using: &random) {
            case 0:
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = port.bigEndian
                sin.sin_addr.s_addr = UInt32.random(in: 0...UInt32.max, using: &random)
                withUnsafeBytes(of: &sin) { raw.copyMemory(from: $0) }
            default:
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                sin6.sin6_port = port.bigEndian
                withUnsafeMutableBytes(of: &sin6.sin6_addr) { bytes in
                    let kind = Int.random(in: 0..<3, using: &random)
                    for i in 0..<16 {
                        // Mapped IPv4 (::ffff:a.b.c.d), runs of zeros (::), or anything.
                        switch kind {
                        case 0: bytes[i] = i < 10 ? 0 : i < 12 ? 0xFF : UInt8.random(in: 0...255, using: &random)
                        case 1: bytes[i] = Bool.random(using: &random) ? 0 : UInt8.random(in: 0...255, using: &random)
                        default: bytes[i] = UInt8.random(in: 0...255, using: &random)
                        }
                    }
                }
                withUnsafeBytes(of: &sin6) { raw.copyMemory(from: $0) }
            }
        }
        return SocketAddress(storage: storage)!
    }

    static func reason(_ random: inout SplitMix64) -> EndReason {
        let why = text(&random)
        let all: [EndReason] = [
            .clientQuit, .clientDisconnected, .idleTimeout, .loginTimeout, .evicted, .tooManyBadCommands,
            .tooManyFailedLogins, .serverShutdown, .shutdownTimeout, .connectionReset, .inputLimitExceeded,
            .outputLimitExceeded, .tlsFailure(why), .messageUnreadable(why), .storageFailure(why), .error(why),
        ]
        return all.randomElement(using: &random)!
    }

    static func summary(_ random: inout SplitMix64) -> SessionSummary {
        var counters = SessionCounters()
        counters.commands = int(&random)
        counters.topCount = int(&random)
        counters.topOctets = int(&random)
        counters.messagesRetrieved = int(&random)
        counters.octetsRetrieved = int(&random)
        counters.messagesDeleted = int(&random)
        counters.octetsDeleted = int(&random)
        counters.maildropOctetsAtLogin = Bool.random(using: &random) ? int(&random) : nil
        counters.uidlChange = Bool.random(using: &random)
            ? UIDLChange(count: int(&random), hash: UInt32.random(in: 0...UInt32.max, using: &random)) : nil
        var user: String?
        switch Int.random(in: 0..<4, using: &random) {
        case 0: user = nil
        case 1: user = text(&random)
        // Around LoggedOctets.maxOctets (256), with multi-octet scalars across the cut.
        case 2: user = String(repeating: "a", count: Int.random(in: 250...260, using: &random)) + text(&random, maxPieces: 4)
        default: user = String(repeating: "é", count: Int.random(in: 120...140, using: &random)) + text(&random)
        }
        var proxy: Logger.Metadata?
        if Int.random(in: 0..<4, using: &random) == 0 {
            proxy = ["proxy": "\(address(&random))"]
            if Bool.random(using: &random) { proxy?["proxy.authority"] = "\(LogEscaping.escape(bytes: Array(text(&random).utf8)))" }
            if Bool.random(using: &random) { proxy?["proxy.unique_id"] = "\(text(&random))" }
            if Bool.random(using: &random) { proxy?["proxy.ssl"] = "\(text(&random))" }
        }
        return SessionSummary(
            connectionID: random.next(),
            client: Bool.random(using: &random) ? .peer(address(&random)) : .named(text(&random)),
            counters: counters, durationMilliseconds: int(&random), reason: reason(&random), user: user,
            proxy: proxy)
    }

    /// The line without its timestamp or journal priority (the first token).
    static func body(_ line: String) -> Substring {
        line.hasPrefix("<") ? line.drop(while: { $0 != ">" }).dropFirst() : line.drop(while: { $0 != " " }).dropFirst()
    }

    /// Handler metadata: none, a worker's, and keys that sort between, before, after and on
    /// top of the line's own (an event field replaces a handler's of the same key).
    static let handlerMetadata: [Logger.Metadata] = [
        [:], ["worker": "3"], ["a": "1", "zz": "x y", "user.truncated": "7", "client": "nobody", "proxy.x": "\u{85}"],
        ["commands0": "=", "reason": "r", "uidl": "u", "user": "u", "worker": "12"],
    ]

    @Test func fastLineEqualsTheMetadataLine() {
        var random = SplitMix64(seed: 17)
        for round in 0..<3000 {
            let summary = Self.summary(&random)
            let metadata = Self.handlerMetadata[round % Self.handlerMetadata.count]
            var handler = StderrLogHandler(label: "test", level: .info)
            handler.metadata = metadata
            let fields = metadata.sorted { $0.key < $1.key }.map { LogField(key: $0.key, value: $0.value) }
            for (message, level) in [("session end" as StaticString, Logger.Level.info), ("health check end", .debug)] {
                let expected = handler.render(level: level, message: "\(message)", metadata: summary.metadata)
                for journal in [false, true] {
                    var out: [UInt8] = []
                    var timestamps = TimestampCache()
                    SessionEndLog.appendLine(summary, message: message, level: level, journal: journal,
                                             time: timespec(tv_sec: 1_700_000_000, tv_nsec: 5_000_000),
                                             handlerFields: fields, timestamps: &timestamps, to: &out)
                    #expect(out.last == 0x0A)
                    let line = String(decoding: out.dropLast(), as: UTF8.self)
                    #expect(!line.contains("\n"))
                    #expect(Self.body(line) == Self.body(expected), "round \(round)")
                    if journal { #expect(line.hasPrefix("<\(StderrLogHandler.priority(level))>")) }
                }
            }
        }
    }

    @Test func timestampEqualsStrftimeText() {
        var random = SplitMix64(seed: 1)
        var cache = TimestampCache()
        var second = 1_700_000_000
        for _ in 0..<5000 {
            // Mostly the same second (the cache), sometimes a step forward, back or far away.
            switch Int.random(in: 0..<10, using: &random) {
            case 0: second += 1
            case 1: second -= Int.random(in: 1...100_000, using: &random)
            case 2: second = Int.random(in: 0...4_102_444_800, using: &random)  // up to 2100
            default: break
            }
            let ts = timespec(tv_sec: second, tv_nsec: Int.random(in: 0..<1_000_000_000, using: &random))
            var out: [UInt8] = []
            cache.append(ts, to: &out)
            #expect(String(decoding: out, as: UTF8.self) == StderrLogHandler.timestamp(ts))
        }
    }

    @Test func addressTextEqualsDescription() {
        var random = SplitMix64(seed: 2)
        for _ in 0..<3000 {
            let address = Self.address(&random)
            var out: [UInt8] = [0x41]
            address.appendDescription(to: &out)
            #expect(String(decoding: out.dropFirst(), as: UTF8.self) == address.description)
        }
    }

    @Test func decimalsEqualInterpolation() {
        var random = SplitMix64(seed: 3)
        var values = [0, 1, 9, 10, -1, -10, Int.max, Int.min, Int.max - 1, Int.min + 1]
        for _ in 0..<2000 { values.append(Int(truncatingIfNeeded: random.next()) >> Int.random(in: 0..<64, using: &random)) }
        for value in values {
            var out: [UInt8] = []
            out.appendDecimal(value)
            #expect(String(decoding: out, as: UTF8.self) == "\(value)")
        }
        var out: [UInt8] = []
        out.appendDecimal(UInt64.max)
        #expect(String(decoding: out, as: UTF8.self) == "\(UInt64.max)")
    }

    // MARK: the batch

    /// A datagram socket pair: every write(2) of the batch is one datagram, so the test sees
    /// where the writes were cut.
    final class Datagrams {
        let fds: (Int32, Int32)
        init() {
            var pair: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &pair) == 0)
            fds = (pair[0], pair[1])
        }
        deinit {
            close(fds.0)
            close(fds.1)
        }
        /// The writes so far, one string each.
        func received() -> [String] {
            var out: [String] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(fds.1, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if n <= 0 { return out }
                out.append(String(decoding: buffer[..<n], as: UTF8.self))
            }
        }
    }

    static func append(_ batch: LogBatch, _ line: String) {
        batch.append { out, _ in out.append(contentsOf: line.utf8) }
    }

    @Test func linesWaitForTheEndOfTheTurnAndGoOutInOneWrite() {
        let socket = Datagrams()
        let batch = LogBatch(descriptor: socket.fds.0)
        Self.append(batch, "one\n")
        Self.append(batch, "two\n")
        #expect(socket.received().isEmpty)
        batch.flush()
        #expect(socket.received() == ["one\ntwo\n"])
        batch.flush()
        #expect(socket.received().isEmpty)
        #expect(batch.pendingCount == 0)
    }

    @Test func aLineWrittenAtOnceComesAfterThePendingOnes() {
        let socket = Datagrams()
        let batch = LogBatch(descriptor: socket.fds.0)
        Self.append(batch, "session end 1\n")
        batch.write(line: Array("warning later\n".utf8))
        #expect(socket.received() == ["session end 1\nwarning later\n"])
        // Nothing pending: the line goes alone.
        batch.write(line: Array("notice\n".utf8))
        #expect(socket.received() == ["notice\n"])
        // Pending lines and a line too long to share their write: two writes, in order.
        Self.append(batch, "session end 2\n")
        let long = String(repeating: "x", count: LogBatch.maxWriteOctets) + "\n"
        batch.write(line: Array(long.utf8))
        #expect(socket.received() == ["session end 2\n", long])
    }

    @Test func writesCarryWholeLinesUpToPipeBuf() {
        let socket = Datagrams()
        let batch = LogBatch(descriptor: socket.fds.0)
        var random = SplitMix64(seed: 4)
        var lines: [String] = []
        for i in 0..<300 {
            let line = "line \(i) " + String(repeating: "y", count: Int.random(in: 0...400, using: &random)) + "\n"
            lines.append(line)
            Self.append(batch, line)
        }
        // One line longer than a write alone: it goes out by itself.
        let huge = String(repeating: "z", count: 3 * LogBatch.maxWriteOctets) + "\n"
        Self.append(batch, huge)
        lines.append(huge)
        Self.append(batch, "last\n")
        lines.append("last\n")
        batch.flush()
        let writes = socket.received()
        #expect(writes.joined() == lines.joined())
        for write in writes {
            #expect(write.hasSuffix("\n"))
            #expect(write.utf8.count <= LogBatch.maxWriteOctets || write == huge)
        }
        #expect(writes.count < lines.count / 5)  // batched: about 20 lines of ~200 octets a write
    }

    @Test func sessionEndLogWritesThroughTheBatchAtItsLevel() {
        let socket = Datagrams()
        let batch = LogBatch(descriptor: socket.fds.0)
        var random = SplitMix64(seed: 5)
        let summary = Self.summary(&random)
        let handler = StderrLogHandler(label: "test", level: .info)
        let logger = Logger(label: "test") { _ in handler }
        let log = SessionEndLog(logger: logger, batch: batch)
        log.log(summary, message: "health check end", level: .debug, logger: logger)  // below the level
        #expect(batch.pendingCount == 0)
        log.log(summary, message: "session end", level: .info, logger: logger)
        #expect(socket.received().isEmpty)
        batch.flush()
        let writes = socket.received()
        #expect(writes.count == 1)
        let expected = handler.render(level: .info, message: "session end", metadata: summary.metadata)
        #expect(writes.first.map { Self.body(String($0.dropLast())) } == Self.body(expected))
    }

    @Test func otherHandlersGetTheMetadata() {
        let recorder = LogRecorder()
        let logger = recorder.logger(label: "test")
        let batch = LogBatch(descriptor: -1)
        let log = SessionEndLog(logger: logger, batch: batch)
        var random = SplitMix64(seed: 6)
        let summary = Self.summary(&random)
        log.log(summary, message: "session end", level: .info, logger: logger)
        #expect(batch.pendingCount == 0)
        #expect(recorder.contains("session end"))
    }
}
