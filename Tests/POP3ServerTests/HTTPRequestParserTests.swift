import Testing
@testable import POP3Server
import TestSupport

/// The metrics endpoint's request-head parser (RFC 9112), as a pure table: whole, byte by
/// byte, pipelined, and on hostile input.
@Suite struct HTTPRequestParserTests {
    static let limit = 8 * 1024

    /// The result of parsing `text` given at once.
    func parse(_ bytes: [UInt8], limit: Int = HTTPRequestParserTests.limit) -> HTTPRequestParser.Result {
        var parser = HTTPRequestParser()
        return bytes.withUnsafeBytes { parser.parse($0, maxHeadBytes: limit) }
    }

    func parse(_ text: String) -> HTTPRequestParser.Result { parse(Array(text.utf8)) }

    /// The result of feeding `bytes` one octet more at a time (as a connection's buffer grows),
    /// stopping at the first result other than `.needMore`.
    func parseGrowing(_ bytes: [UInt8], limit: Int = HTTPRequestParserTests.limit) -> HTTPRequestParser.Result {
        var parser = HTTPRequestParser()
        var result = HTTPRequestParser.Result.needMore
        for n in 0...bytes.count {
            result = bytes.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]), maxHeadBytes: limit) }
            if result != .needMore { return result }
        }
        return result
    }

    func request(_ method: HTTPRequestHead.Method = .get, _ target: HTTPRequestHead.Target = .metrics,
                 minor: Int = 1, keepAlive: Bool = true, consumed: Int) -> HTTPRequestParser.Result {
        .request(HTTPRequestHead(method: method, target: target, minorVersion: minor, keepAlive: keepAlive), consumed: consumed)
    }

    static let prometheusRequest = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9110\r\nUser-Agent: Prometheus/2.42.0\r\n"
        + "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
        + "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"

    @Test func prometheusScrapeIsAKeepAliveGET() {
        let text = Self.prometheusRequest
        #expect(parse(text) == request(consumed: text.utf8.count))
        #expect(parseGrowing(Array(text.utf8)) == request(consumed: text.utf8.count))
    }

    @Test(arguments: [
        ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", HTTPRequestHead.Method.get, HTTPRequestHead.Target.metrics),
        ("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", .head, .metrics),
        ("POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", .other, .metrics),
        ("get /metrics HTTP/1.1\r\nHost: x\r\n\r\n", .other, .metrics),  // methods are case-sensitive
        ("GETS /metrics HTTP/1.1\r\nHost: x\r\n\r\n", .other, .metrics),
        ("GET /metrics?name[]=up HTTP/1.1\r\nHost: x\r\n\r\n", .get, .metrics),
        ("GET http://127.0.0.1:9110/metrics HTTP/1.1\r\nHost: x\r\n\r\n", .get, .metrics),
        ("GET HTTPS://h/metrics?x HTTP/1.1\r\nHost: x\r\n\r\n", .get, .metrics),
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", .get, .other),
        ("GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n", .get, .other),
        ("GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n", .get, .other),
        ("GET /METRICS HTTP/1.1\r\nHost: x\r\n\r\n", .get, .other),
        ("GET //metrics HTTP/1.1\r\nHost: x\r\n\r\n", .get, .other),
        ("GET http://h HTTP/1.1\r\nHost: x\r\n\r\n", .get, .other),
        ("GET metrics HTTP/1.1\r\nHost: x\r\n\r\n", .get, .other),
        ("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", .other, .other),
    ])
    func methodAndTarget(text: String, method: HTTPRequestHead.Method, target: HTTPRequestHead.Target) {
        #expect(parse(text) == request(method, target, consumed: text.utf8.count))
    }

    @Test(arguments: [
        ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 1, true),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1, false),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\nconnection: Keep-Alive, CLOSE\r\n\r\n", 1, false),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", 1, true),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n", 1, true),
        ("GET /metrics HTTP/1.9\r\nHost: x\r\n\r\n", 1, true),
        ("GET /metrics HTTP/1.0\r\n\r\n", 0, false),
        ("GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n", 0, false),
        ("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, true),
        ("GET /metrics HTTP/1.0\r\nConnection: foo ,\tkeep-alive \r\n\r\n", 0, true),
        ("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", 0, false),
    ])
    func keepAlive(text: String, minor: Int, keepAlive: Bool) {
        #expect(parse(text) == request(minor: minor, keepAlive: keepAlive, consumed: text.utf8.count))
    }

    @Test func emptyLinesBeforeTheRequestLineAndBareLFsAreAccepted() {
        let text = "\r\n\n\r\nGET /metrics HTTP/1.1\nHost: x\n\n"
        #expect(parse(text) == request(consumed: text.utf8.count))
        #expect(parseGrowing(Array(text.utf8)) == request(consumed: text.utf8.count))
    }

    @Test func fieldValuesMayCarryObsTextAndTabs() {
        let text = Array("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Name:\t caf".utf8) + [0xC3, 0xA9] + Array(" \t\r\n\r\n".utf8)
        #expect(parse(text) == request(consumed: text.count))
    }

    @Test func pipelinedRequestsComeOneAtATimeInOrder() {
        let one = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        let two = "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        let three = "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        let all = Array((one + two + three + "GET /met").utf8)
        var parser = HTTPRequestParser()
        var offset = 0
        var seen: [HTTPRequestParser.Result] = []
        while true {
            let result = all.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[offset...]), maxHeadBytes: Self.limit) }
            seen.append(result)
            guard case .request(_, let consumed) = result else { break }
            offset += consumed
        }
        #expect(seen == [
            request(consumed: one.utf8.count),
            request(.head, consumed: two.utf8.count),
            request(.get, .other, keepAlive: false, consumed: three.utf8.count),
            .needMore,
        ])
        #expect(offset == all.count - "GET /met".utf8.count)
    }

    @Test(arguments: [
        "GET /metrics HTTP/1.1\r\n\r\n",  // HTTP/1.1 without Host (RFC 9112 §3.2)
        "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /metrics HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",  // whitespace before the colon (§5.1)
        "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  // obsolete line folding (§5.2)
        "GET /metrics HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",  // bare CR (§2.2)
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\u{7F}\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\u{1}b\r\n\r\n",
        "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics  HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n",
        " GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET\t/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics\r\n\r\n",  // HTTP/0.9
        "GET /metrics http/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics HTTP/1\r\nHost: x\r\n\r\n",
        "GET /metrics HTTP/1.10\r\nHost: x\r\n\r\n",
        "GET /metrics HTTP/x.1\r\nHost: x\r\n\r\n",
        "G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /met\u{7F}rics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 0\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        // Both framings: request smuggling (RFC 9112 §6.3).
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "\r\n\r\n \r\n",
    ])
    func malformedIsRefused(text: String) {
        #expect(parse(text) == .failed(.malformed), "\(text.debugDescription)")
        #expect(parseGrowing(Array(text.utf8)) == .failed(.malformed), "\(text.debugDescription)")
    }

    @Test(arguments: ["GET /metrics HTTP/2.0\r\n\r\n", "GET /metrics HTTP/0.9\r\nHost: x\r\n\r\n",
                      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"])
    func otherMajorVersionsAre505(text: String) {
        #expect(parse(text) == .failed(.versionNotSupported))
    }

    @Test(arguments: [
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /metrics HTTP/1.0\r\nTransfer-Encoding: identity\r\n\r\n",
        // A length no integer type holds: only "zero or not" is asked, nothing overflows.
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: " + String(repeating: "9", count: 400) + "\r\n\r\n",
    ])
    func requestContentIsRefused(text: String) {
        #expect(parse(text) == .failed(.contentNotAccepted))
    }

    @Test func zeroContentLengthIsNoContent() {
        let text = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 000\r\n\r\n"
        #expect(parse(text) == request(consumed: text.utf8.count))
    }

    @Test func theHeadLimitCountsEveryOctet() {
        let start = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: "
        let end = "\r\n\r\n"
        let fits = start + String(repeating: "a", count: Self.limit - start.utf8.count - end.utf8.count) + end
        #expect(fits.utf8.count == Self.limit)
        #expect(parse(fits) == request(consumed: Self.limit))
        #expect(parseGrowing(Array(fits.utf8)) == request(consumed: Self.limit))
        let over = start + String(repeating: "a", count: Self.limit - start.utf8.count - end.utf8.count + 1) + end
        #expect(parse(over) == .failed(.headTooLarge))
        #expect(parseGrowing(Array(over.utf8)) == .failed(.headTooLarge))
        // No line end at all: refused once the limit is reached, not buffered further.
        let noLF = [UInt8](repeating: UInt8(ascii: "A"), count: Self.limit)
        #expect(parse(Array(noLF.dropLast())) == .needMore)
        #expect(parse(noLF) == .failed(.headTooLarge))
        #expect(parse(noLF + noLF) == .failed(.headTooLarge))
        // Many short fields count as much as one long one.
        let many = "GET /metrics HTTP/1.1\r\nHost: x\r\n" + String(repeating: "A: b\r\n", count: Self.limit / 6)
        #expect(parse(many) == .failed(.headTooLarge))
    }

    @Test func garbageWithoutALineEndIsRefusedAtOnce() {
        #expect(parse([0]) == .failed(.malformed))
        #expect(parse(Array("GET /metrics\0".utf8)) == .failed(.malformed))
        #expect(parse(Array("GET /\u{1B}[2J".utf8)) == .failed(.malformed))
        #expect(parse([0x47, 0x45, 0x54, 0x20, 0xFF]) == .failed(.malformed))  // non-ASCII in the request line
        #expect(parse(Array("GET /metrics HTTP/1.1\r".utf8)) == .needMore)  // CR waits for its LF
        #expect(parse(Array("GET /metrics HTTP/1.1\rX".utf8)) == .failed(.malformed))
        // A TLS ClientHello (a client speaking HTTPS to the plain endpoint).
        #expect(parse([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]) == .failed(.malformed))
    }

    /// Hostile input never traps, and feeding it an octet at a time gives what feeding it
    /// whole does (the parser resumes exactly). Deterministic: a fixed-seed generator.
    @Test func randomInputNeverTrapsAndResumesExactly() {
        var rng = SplitMix64(seed: 0x9E37_79B9_7F4A_7C15)
        let seeds = [Self.prometheusRequest, "HEAD /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                     "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"].map { Array($0.utf8) }
        var outcomes: Set<String> = []
        for round in 0..<3_000 {
            var bytes: [UInt8]
            if round % 3 == 0 {
                bytes = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                bytes = seeds[Int(rng.next() % UInt64(seeds.count))]
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let i = Int(rng.next() % UInt64(bytes.count))
                    let pick = [0, 9, 10, 13, 32, 58, 0x7F, 0xFF, UInt8(truncatingIfNeeded: rng.next())]
                    bytes[i] = pick[Int(rng.next() % UInt64(pick.count))]
                }
            }
            let limit = 64 + Int(rng.next() % 256)
            let whole = parse(bytes, limit: limit)
            let growing = parseGrowing(bytes, limit: limit)
            if whole != .needMore {
                #expect(whole == growing, "round \(round): \(bytes)")
            }
            if case .request(_, let consumed) = whole { #expect(consumed <= min(limit, bytes.count)) }
            switch whole {
            case .needMore: outcomes.insert("needMore")
            case .request: outcomes.insert("request")
            case .failed(let failure): outcomes.insert("\(failure)")
            }
        }
        // The mutations reach every kind of outcome, so the comparison above means something.
        #expect(outcomes.count >= 4, "\(outcomes)")
    }
}
