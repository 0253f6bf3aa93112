import POP3
import Testing
import TestSupport

func encode(_ message: String, bodyLines: Int?, chunk: Int) -> (String, Int, Bool) {
    var encoder = MessageEncoder(bodyLines: bodyLines)
    var out = ByteArraySink()
    let bytes = Array(message.utf8)
    var fed = 0
    for piece in bytes.pieces(of: chunk) where !encoder.isComplete {
        piece.withUnsafeBytes { encoder.encode($0, out: &out) }
        fed += piece.count
    }
    let stoppedEarly = fed < bytes.count
    encoder.finish(out: &out)
    return (out.text, encoder.contentOctets, stoppedEarly)
}

let encoderCases: [(String, Int?, String)] = [
    ("a\nb\n", nil, "a\r\nb\r\n.\r\n"),
    ("a\r\nb\r\n", nil, "a\r\nb\r\n.\r\n"),
    ("a\r\nb", nil, "a\r\nb\r\n.\r\n"),
    ("", nil, ".\r\n"),
    (".\n..x\n.", nil, "..\r\n...x\r\n..\r\n.\r\n"),
    // A bare CR ends a line (classic Mac files), sent as CRLF: the issue 10 cases.
    ("a\rb\n", nil, "a\r\nb\r\n.\r\n"),
    ("x\r", nil, "x\r\n.\r\n"),
    ("\r", nil, "\r\n.\r\n"),
    ("Subject: c\r\rbody\r", nil, "Subject: c\r\n\r\nbody\r\n.\r\n"),
    ("Subject: c\r\rbody\r", 0, "Subject: c\r\n\r\n.\r\n"),
    ("H: 1\r\rl1\rl2\rl3\r", 2, "H: 1\r\n\r\nl1\r\nl2\r\n.\r\n"),
    ("a\r\r\nb", nil, "a\r\n\r\nb\r\n.\r\n"),
    ("a\r.\r\n", nil, "a\r\n..\r\n.\r\n"),
    ("a\n\r.x", nil, "a\r\n\r\n..x\r\n.\r\n"),
    ("H: 1\n\nl1\nl2\nl3\n", 0, "H: 1\r\n\r\n.\r\n"),
    ("H: 1\n\nl1\nl2\nl3\n", 2, "H: 1\r\n\r\nl1\r\nl2\r\n.\r\n"),
    ("H: 1\r\n\r\n.l1\r\nl2\r\n", 1, "H: 1\r\n\r\n..l1\r\n.\r\n"),
    ("H: 1\nH: 2\n", 0, "H: 1\r\nH: 2\r\n.\r\n"),
    ("H: 1\nH: 2", 5, "H: 1\r\nH: 2\r\n.\r\n"),
    ("H: 1\n\n", 3, "H: 1\r\n\r\n.\r\n"),
    ("H: 1\n\nbody", 10, "H: 1\r\n\r\nbody\r\n.\r\n"),
]

let lineParserInput = "USER a\r\nPASS b c\nSTAT\r\n\r\n" + String(repeating: "x", count: 600) + "\r\nLIST 1\r\npartial"

@Suite struct CodecTests {
    @Test(arguments: encoderCases, [1, 2, 3, 1000])
    func encoder(_ testCase: (String, Int?, String), chunk: Int) {
        let (text, octets, _) = encode(testCase.0, bodyLines: testCase.1, chunk: chunk)
        #expect(text == testCase.2)
        // contentOctets = what LIST reports: output without stuffing and terminator.
        // Every output line starting with "." carries one stuffed dot.
        let body = Array(text.utf8.dropLast(3))
        var stuffed = 0
        for index in body.indices where body[index] == UInt8(ascii: ".") && (index == 0 || body[index - 1] == 0x0A) {
            stuffed += 1
        }
        #expect(octets == body.count - stuffed)
    }

    @Test func topStopsReadingEarly() {
        let body = String(repeating: "line\n", count: 10_000)
        let (_, _, stoppedEarly) = encode("H: 1\n\n" + body, bodyLines: 3, chunk: 64)
        #expect(stoppedEarly)
    }

    @Test func largeMessageRoundTripsThroughReplyParser() {
        var message = ""
        for index in 0..<2000 { message += (index % 7 == 0 ? ".dot \(index)" : "line \(index)") + (index % 3 == 0 ? "\n" : "\r\n") }
        let (text, octets, _) = encode(message, bodyLines: nil, chunk: 4096)
        for chunk in [1, 13, 100_000] {
            var parser = ReplyParser()
            parser.expect(multiLine: true)
            let (events, texts) = parseAll("+OK \(octets) octets\r\n" + text, parser: &parser, chunk: chunk)
            #expect(events.last == .end(octets: octets, lines: 2000))
            let lines = texts.dropFirst().dropLast()
            #expect(lines.count == 2000)
            #expect(lines.first == ".dot 0")
            #expect(lines.last == "line 1999")
        }
    }

    @Test func replyParserStatusAndCodes() {
        var parser = ReplyParser()
        let input = "+OK\r\n-ERR [IN-USE] locked\r\n-ERR [SYS/TEMP] later\r\n+OK fine\r\n+ Zm9v\r\n+ \r\nhello\r\n"
        let (events, texts) = parseAll(input, parser: &parser, chunk: 3)
        #expect(texts == ["", "locked", "later", "fine", "Zm9v", "", ""])
        #expect(events.count == 7)
        if case .status(let ok, let code, _) = events[1] {
            #expect(!ok)
            #expect(code == .inUse)
        } else {
            Issue.record("expected a status")
        }
        if case .status(_, let code, _) = events[2] { #expect(code == .sysTemp) }
        #expect(events[6] == .malformed)
    }

    @Test func replyParserListing() {
        var parser = ReplyParser()
        parser.expect(multiLine: true)
        let (events, texts) = parseAll("+OK 2 messages\r\n1 100\r\n2 200\r\n.\r\n+OK\r\n", parser: &parser, chunk: 1)
        #expect(texts == ["2 messages", "1 100", "2 200", "", ""])
        #expect(events[3] == .end(octets: 14, lines: 2))
        #expect(!parser.isInBody)
    }

    @Test func replyParserSplitsHugeLines() {
        var parser = ReplyParser(maxLineLength: 100)
        parser.expect(multiLine: true)
        let long = String(repeating: "y", count: 1000)
        let (events, _) = parseAll("+OK\r\n." + long + "\r\n.\r\n", parser: &parser, chunk: 50)
        #expect(events.last == .end(octets: 1002, lines: 1))
    }

    // MARK: - LineParser

    @Test(arguments: [1, 2, 5, 1000])
    func lineParserChunks(chunk: Int) {
        let events = runLineParser(lineParserInput, chunk: chunk)
        #expect(events == ["USER a", "PASS b c", "STAT", "", "<too long>", "LIST 1"])
    }

    @Test func lineParserBoundary() {
        // 253 octets + CRLF = 255: allowed (RFC 2449 §4); one more is too long.
        let ok = String(repeating: "a", count: 253)
        #expect(runLineParser(ok + "\r\n", chunk: 1000) == [ok])
        #expect(runLineParser(ok + "a\r\n", chunk: 1000) == ["<too long>"])
        #expect(runLineParser(ok + "a\r\n", chunk: 1) == ["<too long>"])
        #expect(runLineParser(ok + "a\n", chunk: 1) == [ok + "a"])
    }

    @Test func lineParserDiscardsWithoutBuffering() {
        var parser = LineParser()
        let junk = [UInt8](repeating: 0x41, count: 10_000)
        var reported = 0
        for _ in 0..<10 {
            let (event, consumed) = junk.withUnsafeBytes { parser.next($0) }
            #expect(consumed == junk.count)
            if event == .tooLong { reported += 1 }
        }
        #expect(reported == 1)
        let tail = Array("AAA\nNOOP\r\n".utf8)
        let (event, consumed) = tail.withUnsafeBytes { parser.next($0) }
        #expect(event == .line(4..<8))
        #expect(consumed == tail.count)
    }

    @Test func binaryGarbageNeverTraps() {
        var harness = Harness()
        var generator = SplitMix64(seed: 42)
        var bytes: [UInt8] = []
        for _ in 0..<20_000 { bytes.append(UInt8(truncatingIfNeeded: generator.next())) }
        harness.feed(bytes: bytes, chunk: 97)
        #expect(harness.closed)  // ten bad commands at most
        #expect(harness.replies.hasSuffix("-ERR too many bad commands, closing connection\r\n"))
    }
}

func runLineParser(_ text: String, chunk: Int) -> [String] {
    var parser = LineParser()
    var buffer: [UInt8] = []
    var events: [String] = []
    for piece in Array(text.utf8).pieces(of: chunk) {
        buffer += piece
        while true {
            let (event, consumed) = buffer.withUnsafeBytes { parser.next($0) }
            switch event {
            case .line(let range): events.append(String(decoding: buffer[range], as: UTF8.self))
            case .tooLong: events.append("<too long>")
            case .needMore: break
            }
            buffer.removeFirst(consumed)
            if event == .needMore { break }
        }
    }
    return events
}

/// Runs a ReplyParser over text in chunks; returns events and the text of each event.
func parseAll(_ text: String, parser: inout ReplyParser, chunk: Int) -> ([ReplyEvent], [String]) {
    var buffer: [UInt8] = []
    var events: [ReplyEvent] = []
    var texts: [String] = []
    var partial = ""
    for piece in Array(text.utf8).pieces(of: chunk) {
        buffer += piece
        while true {
            let (event, consumed) = buffer.withUnsafeBytes { parser.next($0) }
            if event == .needMore { break }
            switch event {
            case .status(_, _, let range), .challenge(let range):
                texts.append(String(decoding: buffer[range], as: UTF8.self))
                events.append(event)
            case .line(let range, let complete):
                partial += String(decoding: buffer[range], as: UTF8.self)
                if complete {
                    texts.append(partial)
                    partial = ""
                    events.append(event)
                }
            case .end, .malformed:
                texts.append("")
                events.append(event)
            case .needMore:
                break
            }
            buffer.removeFirst(consumed)
        }
    }
    return (events, texts)
}
