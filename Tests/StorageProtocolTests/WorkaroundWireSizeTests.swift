import Glibc
import POP3
import Testing

@testable import Maildrop
import TestSupport

/// `pop3_client_workarounds` under the one wire-size rule: with `outlook-no-nuls` and
/// `oe-ns-eoh` (alone and together) the size Maildrop's counter lists (with
/// `WireSizeRule.addsMissingHeaderEnd` mirroring `oe-ns-eoh`) is the number of octets the
/// encoder sends, on random messages over {a, ., CR, LF, NUL} in random chunks, through real
/// Maildir files, names with `W=` and the size cache; and both match the model (the plain
/// rule's lines, each NUL as 0x80, an empty line added to a message that has none).
@Suite struct WorkaroundWireSizeTests {
    static let cases = 5_000
    static let fileCases = 300
    static let alphabet: [UInt8] = [UInt8(ascii: "a"), UInt8(ascii: "."), 0x0D, 0x0A, 0x00]
    static let variants: [ClientWorkarounds] = [[], .outlookNoNuls, .oeNsEoh, [.outlookNoNuls, .oeNsEoh]]
    let plain = WireSizePropertyTests()

    static func rule(_ workarounds: ClientWorkarounds) -> WireSizeRule {
        WireSizeRule(addsMissingHeaderEnd: workarounds.contains(.oeNsEoh))
    }

    /// The plain rule's lines, then the workarounds, written the obvious way.
    func model(_ bytes: [UInt8], _ workarounds: ClientWorkarounds) -> WireSizePropertyTests.Model {
        var model = plain.model(bytes)
        if workarounds.contains(.outlookNoNuls) {
            model.lines = model.lines.map { $0.map { $0 == 0 ? 0x80 : $0 } }
        }
        if workarounds.contains(.oeNsEoh) && !model.lines.contains(where: \.isEmpty) {
            model.lines.append([])
        }
        return model
    }

    func counterSize(_ bytes: [UInt8], _ rule: WireSizeRule, chunks: [Int]) -> Int {
        var counter = CRLFSizeCounter(rule: rule)
        for piece in bytes.pieces(sizes: chunks) {
            piece.withUnsafeBytes { counter.consume($0) }
        }
        return counter.total
    }

    func encoded(_ bytes: [UInt8], bodyLines: Int?, _ workarounds: ClientWorkarounds, chunks: [Int]) -> [UInt8] {
        var encoder = MessageEncoder(bodyLines: bodyLines, workarounds: workarounds)
        var out = ByteArraySink()
        for piece in bytes.pieces(sizes: chunks) where !encoder.isComplete {
            piece.withUnsafeBytes { encoder.encode($0, out: &out) }
        }
        encoder.finish(out: &out)
        #expect(encoder.contentOctets == (plain.unstuff(out.bytes)?.octets ?? -1))
        return out.bytes
    }

    func randomMessage(_ random: inout SplitMix64) -> [UInt8] {
        let length = Int.random(in: 0...WireSizePropertyTests.maxLength, using: &random)
        return (0..<length).map { _ in Self.alphabet[Int.random(in: 0..<Self.alphabet.count, using: &random)] }
    }

    @Test func counterEncoderAndModelAgreeUnderEveryWorkaround() {
        var random = SplitMix64(seed: WireSizePropertyTests.seed ^ 0x0E_0E0E)
        var failures = 0
        for caseIndex in 0..<Self.cases where failures < 5 {
            let message = randomMessage(&random)
            for workarounds in Self.variants where failures < 5 {
                let expected = model(message, workarounds)
                let listed = counterSize(message, Self.rule(workarounds), chunks: plain.randomChunks(message.count, &random))
                let retr = encoded(message, bodyLines: nil, workarounds, chunks: plain.randomChunks(message.count, &random))
                let topLines = Int.random(in: 0...3, using: &random)
                let top = encoded(message, bodyLines: topLines, workarounds, chunks: plain.randomChunks(message.count, &random))
                let problem: String?
                if let delivered = plain.unstuff(retr) {
                    if delivered.octets != listed {
                        problem = "listed \(listed), RETR delivered \(delivered.octets)"
                    } else if listed != expected.wireOctets || delivered.lines != expected.lines {
                        problem = "counter and RETR say \(listed), the model \(expected.wireOctets)"
                    } else if retr.contains(0) && workarounds.contains(.outlookNoNuls) {
                        problem = "a NUL was sent"
                    } else if plain.unstuff(top)?.lines != expected.top(topLines) {
                        problem = "TOP \(topLines) sent \(plain.escaped(top))"
                    } else {
                        problem = nil
                    }
                } else {
                    problem = "RETR is not stuffed CRLF lines: \(plain.escaped(retr))"
                }
                if let problem {
                    failures += 1
                    Issue.record("case \(caseIndex) \(workarounds.description): \(plain.escaped(message)): \(problem)")
                }
            }
        }
    }

    @Test func spelledOut() {
        let all: [Int] = [1_000]
        // Headers only: oe-ns-eoh adds the empty line, and the size counts it.
        let headers = Array("Subject: x\r\nFrom: y\r\n".utf8)
        #expect(encoded(headers, bodyLines: nil, .oeNsEoh, chunks: all) == Array("Subject: x\r\nFrom: y\r\n\r\n.\r\n".utf8))
        #expect(counterSize(headers, Self.rule(.oeNsEoh), chunks: all) == headers.count + 2)
        #expect(encoded(headers, bodyLines: 0, .oeNsEoh, chunks: all) == Array("Subject: x\r\nFrom: y\r\n\r\n.\r\n".utf8))
        // Unterminated last header: ended, then the empty line.
        #expect(encoded(Array("Subject: x".utf8), bodyLines: nil, .oeNsEoh, chunks: all) == Array("Subject: x\r\n\r\n.\r\n".utf8))
        // An empty file becomes one empty line (the empty header and its end).
        #expect(encoded([], bodyLines: nil, .oeNsEoh, chunks: all) == Array("\r\n.\r\n".utf8))
        #expect(counterSize([], Self.rule(.oeNsEoh), chunks: all) == 2)
        // A message with its empty line is untouched.
        let normal = Array("Subject: x\n\nbody\n".utf8)
        #expect(encoded(normal, bodyLines: nil, .oeNsEoh, chunks: all) == encoded(normal, bodyLines: nil, [], chunks: all))
        #expect(counterSize(normal, Self.rule(.oeNsEoh), chunks: all) == counterSize(normal, WireSizeRule(), chunks: all))
        // NULs: one 0x80 each, same length.
        let nuls: [UInt8] = Array("a".utf8) + [0, 0] + Array("b\r\n\r\n".utf8) + [0]
        #expect(encoded(nuls, bodyLines: nil, .outlookNoNuls, chunks: Array(repeating: 1, count: nuls.count))
                == Array("a".utf8) + [0x80, 0x80] + Array("b\r\n\r\n".utf8) + [0x80, 0x0D, 0x0A] + Array(".\r\n".utf8))
        #expect(encoded(nuls, bodyLines: nil, [], chunks: all).contains(0))  // off: sent as they are
    }

    /// Through real files: names with a `W=` of the plain rule, the size cache written under one
    /// rule and read under the other, Session's LIST and `+OK n octets`, the reader and encoder.
    @Test func maildropListingFollowsTheRuleThroughNamesAndTheCache() throws {
        var random = SplitMix64(seed: WireSizePropertyTests.seed ^ 0xCAC4E)
        let temp = TempDirectory()
        let root = temp.path + "/Maildir"
        let writer = try MaildirWriter(root: root)
        var messages: [[UInt8]] = []
        for index in 0..<Self.fileCases {
            var message = randomMessage(&random)
            if index % 4 == 0 { message = Array("Subject: headers only \(index)\r\n".utf8) }
            messages.append(message)
            // Every other name carries Dovecot's S= and W= (the plain rule's size).
            let plainSize = counterSize(message, WireSizeRule(), chunks: [max(1, message.count)])
            let name = index % 2 == 0
                ? "\(1_700_000_000 + index).M\(index)P1.host,S=\(message.count),W=\(plainSize)"
                : "\(1_700_000_000 + index).M\(index)P1.host"
            _ = try writer.deliver(message, fileName: name)
        }
        // Plain, then oe-ns-eoh (the plain cache and the W= fields must not be used), then both
        // again: each open lists what its own encoder sends.
        for workarounds in [[], .oeNsEoh, [.oeNsEoh, .outlookNoNuls], [], .outlookNoNuls] as [ClientWorkarounds] {
            let maildrop = try Maildrop.open(path: root, wireSize: Self.rule(workarounds))
            defer { maildrop.close() }
            try #require(maildrop.count == messages.count)
            if workarounds.contains(.oeNsEoh) { #expect(maildrop.statistics.sizesFromName == 0) }
            var session = Session(config: SessionConfig(apopTimestamp: "<1.1@test>", plaintextAuthAllowed: true,
                                                        clientWorkarounds: workarounds))
            var out = ByteArraySink()
            _ = plain.command("USER alice", session: &session, out: &out)
            _ = plain.command("PASS secret", session: &session, out: &out)
            _ = session.loginFinished(.success(MaildropListing(
                sizes: maildrop.messages.map(\.size), uids: maildrop.messages.map(\.uid))), out: &out)
            var failures = 0
            for (index, message) in messages.enumerated() where failures < 5 {
                let wire = model(message, workarounds).wireOctets
                out.bytes.removeAll()
                _ = plain.command("LIST \(index + 1)", session: &session, out: &out)
                let listed = plain.text(out.bytes)
                out.bytes.removeAll()
                var action = plain.command("RETR \(index + 1)", session: &session, out: &out)
                if case .openMessage = action { action = session.messageOpened(.opened, out: &out) }
                let announced = plain.text(out.bytes)
                out.bytes.removeAll()
                var encoder = MessageEncoder(bodyLines: nil, workarounds: session.config.clientWorkarounds)
                let reader = try maildrop.openMessage(index)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 7, alignment: 1)
                defer { buffer.deallocate() }
                while true {
                    let n = try reader.read(into: buffer)
                    if n == 0 { break }
                    encoder.encode(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), out: &out)
                }
                reader.close()
                encoder.finish(out: &out)
                let sent = plain.unstuff(out.bytes)?.octets
                if listed != "+OK \(index + 1) \(wire)\r\n" || announced != "+OK \(wire) octets\r\n" || sent != wire {
                    failures += 1
                    Issue.record("\(workarounds.description) message \(index + 1) \(plain.escaped(message)): model \(wire), LIST \(listed), RETR \(announced), sent \(sent ?? -1)")
                }
            }
        }
    }
}
