import Glibc
import Testing
@testable import POP3Server
import TestSupport

/// One HTTP response as a client reads it.
struct HTTPReply {
    let status: Int
    let fields: [(name: String, value: String)]
    let body: [UInt8]

    func field(_ name: String) -> String? {
        fields.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

extension TestClient {
    /// Reads one response: status line, fields, then `Content-Length` octets of body (none
    /// for a response to HEAD).
    func reply(toHead: Bool = false) throws -> HTTPReply {
        let statusLine = try line()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else {
            throw HarnessError("not a status line: \(statusLine.debugDescription)")
        }
        var fields: [(name: String, value: String)] = []
        while true {
            let l = try line()
            if l.isEmpty { break }
            guard let colon = l.firstIndex(of: ":") else { throw HarnessError("not a field: \(l.debugDescription)") }
            fields.append((String(l[..<colon]), l[l.index(after: colon)...].trimmingCharacters(in: " ")))
        }
        let length = fields.first { $0.name.lowercased() == "content-length" }.flatMap { Int($0.value) } ?? 0
        let body = toHead ? [] : try read(exactly: length)
        return HTTPReply(status: status, fields: fields, body: body)
    }

    /// Sends, ignoring a refusal by a server that has already closed (EPIPE, ECONNRESET):
    /// what counts is what it answered before.
    func sendIgnoringClose(_ bytes: [UInt8]) {
        do { try send(bytes) } catch {}
    }

    /// Sends `GET /metrics` (`getMetrics`) and reads its reply.
    func scrape() throws -> HTTPReply {
        try send(getMetrics)
        return try reply()
    }
}

extension MetricsHarness {
    /// A harness whose endpoint limits are the defaults with `change` applied.
    static func with(limits change: (inout MetricsEndpoint.Limits) -> Void) throws -> MetricsHarness {
        var limits = MetricsEndpoint.Limits()
        change(&limits)
        return try MetricsHarness(limits: limits)
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}

let getMetrics = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

/// The metrics endpoint on a real loop, through real sockets: every status, keep-alive and
/// close, pipelining, the limits (head size, head deadline, idle keep-alive, connections),
/// refused content, and hostile bytes.
@Suite struct MetricsEndpointTests {
    @Test func getMetricsIs200WithTheExpositionFormat() throws {
        let server = try MetricsHarness()
        defer { server.stop() }
        let client = try server.client()
        try client.send(getMetrics)
        let reply = try client.reply()
        #expect(reply.status == 200)
        #expect(reply.field("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(reply.field("Content-Length") == "\(reply.body.count)")
        #expect(reply.text.contains("renders_total 1\n"), "\(reply.text)")
        #expect(reply.field("Date")?.hasSuffix(" GMT") == true)
        #expect(reply.field("Connection") == nil, "HTTP/1.1 keeps the connection by default")
        #expect(try server.renders() == 1)
    }

    @Test func headHasTheHeadersOfGETAndNoBody() throws {
        let server = try MetricsHarness()
        defer { server.stop() }
        let client = try server.client()
        try client.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        let head = try client.reply(toHead: true)
        #expect(head.status == 200)
        #expect(head.field("Content-Type") == MetricsEndpoint.contentType)
        // What GET would send: "renders_total 1" is as long as "renders_total 2".
        try client.send(getMetrics)
        let get = try client.reply()
        #expect(get.status == 200, "the GET's reply follows the HEAD's fields at once: no body came between")
        #expect(head.field("Content-Length") == "\(get.body.count)")
        #expect(get.text.contains("renders_total 2\n"))
    }

    @Test func otherPathsAre404AndKeepTheConnection() throws {
        let server = try MetricsHarness()
        defer { server.stop() }
        let client = try server.client()
        for target in ["/", "/metrics/", "/favicon.ico", "/metrics%00"] {
            try client.send("GET \(target) HTTP/1.1\r\nHost: x\r\n\r\n")
            let reply = try client.reply()
            #expect(reply.status == 404, "\(target)")
            #expect(reply.text == "Not Found\n")
        }
        try client.send("POST /other HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try client.reply().status == 404)
        #expect(try client.scrape().status == 200)
        #expect(try server.renders() == 1, "a 404 renders nothing")
    }

    @Test func otherMethodsAre405WithAllow() throws {
        let server = try MetricsHarness()
        defer { server.stop() }
        let client = try server.client()
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            try client.send("\(method) /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            let reply = try client.reply()
            #expect(reply.status == 405, "\(method)")
            #expect(reply.field("Allow") == "GET, HEAD")
        }
        #expect(try client.scrape().status == 200)
    }

    /// Statuses after which the framing cannot be trusted: the reply, then the close.
    @Test(arguments: [
        ("garbage\r\n\r\n", 400),
        ("GET /metrics HTTP/1.1\r\n\r\n", 400),  // no Host
        ("GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("GET /metrics HTTP/2.0\r\n\r\n", 505),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413),
        ("POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 413),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "a", count: 9_000) + "\r\n\r\n", 431),
    ])
    func refusalsCloseTheConnection(request: String, status: Int) throws {
        let server = try MetricsHarness()
        defer { server.stop() }
        let client = try server.client()
        client.sendIgnoringClose(Array(request.utf8) + Array(getMetrics.utf8))
        let reply = try client.reply()
        #expect(reply.status == status)
        #expect(reply.field("Connection") == "close")
        #expect(try client.waitForClose(timeoutSeconds: 5), "closed after the refusal")
        #expect(client.leftover.isEmpty, "nothing after the refusal, not even the pipelined GET's reply")
        #expect(try server.renders() == 0)
    }

    /// A refused request whose client is still sending (more than one read of input): the
    /// server reads and drops that input before it closes. Closing a socket with unread input
    /// makes the kernel send a reset and throw away what it has not sent yet: here the end of
    /// a large reply to a slow reader and the refusal itself (RFC 9112 §9.6).
    @Test func aRefusalAfterALargeReplyReachesASlowReader() throws {
        let server = try MetricsHarness(padding: 512 * 1024)
        defer { server.stop() }
        let client = try server.client(receiveBufferBytes: 4_096)
        client.timeoutSeconds = 20
        // A GET, a malformed head, then more than the connection reads at once.
        try client.send(getMetrics + "garbage\r\n\r\n" + String(repeating: "j", count: 40_000))
        let first = try client.reply()
        #expect(first.status == 200)
        #expect(first.body.count > 512 * 1024)
        let refusal = try client.reply()
        #expect(refusal.status == 400)
        _ = shutdown(client.fd, Int32(SHUT_WR))
        #expect(try client.waitForClose(timeoutSeconds: 10))
    }

    @Test func pipelinedRequestsAreAnsweredInOrderWithOneRenderEach() throws {
        let server = try MetricsHarness()
        defer { server.stop() }
        let client = try server.client()
        let requests = getMetrics + getMetrics + "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            + "GET /x HTTP/1.1\r\nHost: x\r\n\r\n" + getMetrics
            + "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + getMetrics
        try client.send(requests)
        #expect(try client.reply().text.contains("renders_total 1\n"))
        #expect(try client.reply().text.contains("renders_total 2\n"))
        #expect(try client.reply(toHead: true).status == 200)  // render 3
        #expect(try client.reply().status == 404)
        #expect(try client.reply().text.contains("renders_total 4\n"))
        let last = try client.reply()
        #expect(last.text.contains("renders_total 5\n"))
        #expect(last.field("Connection") == "close")
        #expect(try client.waitForClose(timeoutSeconds: 5))
        #expect(client.leftover.isEmpty, "the request after Connection: close is not answered")
        #expect(try server.renders() == 5)
    }

    /// More pipelined requests than one turn answers, with replies larger than the output
    /// throttle, to a client that reads only after sending them all: every one is answered,
    /// in order, and the output waiting on the server stays bounded meanwhile.
    @Test func aPipelineLargerThanTheOutputThrottleIsAnsweredInFull() throws {
        let count = 120
        let server = try MetricsHarness(padding: 32 * 1024)
        defer { server.stop() }
        let client = try server.client()
        try client.send(String(repeating: getMetrics, count: count))
        for i in 1...count {
            let reply = try client.reply()
            #expect(reply.status == 200)
            #expect(reply.text.contains("renders_total \(i)\n"), "reply \(i) in order")
            if reply.status != 200 { break }
        }
        #expect(try server.renders() == count)
    }

    @Test func keepAliveAndClose() throws {
        let server = try MetricsHarness()
        defer { server.stop() }
        // HTTP/1.1: open until asked otherwise.
        let one = try server.client()
        #expect(try one.scrape().status == 200)
        #expect(try !one.waitForClose(timeoutSeconds: 0.3))
        try one.send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(try one.reply().field("Connection") == "close")
        #expect(try one.waitForClose(timeoutSeconds: 5))
        // HTTP/1.0: closed unless keep-alive is asked for.
        let two = try server.client()
        try two.send("GET /metrics HTTP/1.0\r\n\r\n")
        #expect(try two.reply().field("Connection") == "close")
        #expect(try two.waitForClose(timeoutSeconds: 5))
        let three = try server.client()
        try three.send("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try three.reply().field("Connection") == "keep-alive")
        try three.send("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try three.reply().status == 200)
    }

    @Test func aHeadNotCompleteByTheDeadlineGets408AndTheClose() throws {
        let server = try MetricsHarness.with { $0.headTimeoutNanoseconds = 500_000_000 }
        defer { server.stop() }
        let client = try server.client()
        // First a whole request: the deadline runs per head, not per connection.
        #expect(try client.scrape().status == 200)
        let start = TestClient.monotonicNanoseconds()
        try client.send("GET /metrics HTTP/1.1\r\n")
        // An octet every 100 ms does not move the deadline.
        var closed = false
        for _ in 0..<80 {
            client.sendIgnoringClose(Array("X".utf8))
            if try client.waitForClose(timeoutSeconds: 0.1) { closed = true; break }
        }
        let elapsed = Double(TestClient.monotonicNanoseconds() - start) / 1e9
        #expect(closed, "closed while octets still trickled in")
        // The deadline, then at most the linger (1 s) while the octets still come.
        #expect(elapsed >= 0.45 && elapsed < 6, "after the 0.5 s deadline: \(elapsed) s")
        #expect(client.leftover.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(client.leftover.debugDescription)")
        #expect(try server.renders() == 1)
    }

    @Test func aConnectionThatSendsNothingIsClosedWithoutAWord() throws {
        let server = try MetricsHarness.with { $0.headTimeoutNanoseconds = 300_000_000 }
        defer { server.stop() }
        let client = try server.client()
        #expect(try client.waitForClose(timeoutSeconds: 5))
        #expect(client.leftover.isEmpty)
        #expect(try waitFor(timeoutSeconds: 5) { try server.connections() == 0 })
    }

    @Test func anIdleKeepAliveConnectionIsClosed() throws {
        let server = try MetricsHarness.with { $0.keepAliveTimeoutNanoseconds = 500_000_000 }
        defer { server.stop() }
        let client = try server.client()
        #expect(try client.scrape().status == 200)
        let start = TestClient.monotonicNanoseconds()
        #expect(try client.waitForClose(timeoutSeconds: 5))
        let elapsed = Double(TestClient.monotonicNanoseconds() - start) / 1e9
        #expect(elapsed >= 0.4, "not before the keep-alive timeout: \(elapsed) s")
        #expect(client.leftover.isEmpty, "closed without a reply")
    }

    /// At the cap a new connection closes the oldest: idle connections cannot keep a scraper out.
    @Test func aConnectionBeyondTheCapClosesTheOldest() throws {
        let server = try MetricsHarness.with { $0.maxConnections = 3 }
        defer { server.stop() }
        var open: [TestClient] = []
        for _ in 0..<3 {
            let c = try server.client()
            #expect(try c.scrape().status == 200)
            open.append(c)
        }
        #expect(try server.connections() == 3)
        // Three idle holders, then a scraper: it is served, and the oldest holder is gone.
        let scraper = try server.client()
        #expect(try scraper.scrape().status == 200)
        #expect(try open[0].waitForClose(timeoutSeconds: 5), "the oldest connection is closed")
        #expect(try server.connections() == 3)
        #expect(server.logs.contains("metrics connections evicted"))
        // The newer ones were not disturbed.
        #expect(try open[2].scrape().status == 200)
        // A flood of idle connections never leaves more than the cap open.
        var flood: [TestClient] = []
        for _ in 0..<10 { flood.append(try server.client()) }
        #expect(try waitFor(timeoutSeconds: 5) { try server.connections() == 3 })
        let last = try server.client()
        #expect(try last.scrape().status == 200)
    }

    /// NUL octets, no line end at all, 100 KB of garbage, a TLS ClientHello, random bytes:
    /// each gets its refusal or the close, and the endpoint keeps serving.
    @Test func hostileBytesNeverStopTheEndpoint() throws {
        let server = try MetricsHarness()
        defer { server.stop() }
        var rng = SplitMix64(seed: 42)
        var inputs: [[UInt8]] = [
            [0, 0, 0, 0],
            Array("GET /metrics\0 HTTP/1.1\r\nHost: x\r\n\r\n".utf8),
            [UInt8](repeating: UInt8(ascii: "A"), count: 100_000),  // no CRLF at all
            (0..<100_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) },
            [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03] + [UInt8](repeating: 0, count: 64),
            Array("GET /metrics HTTP/1.1\r\nHost: x\r\nX: \0\r\n\r\n".utf8),
            Array(String(repeating: "\r\n", count: 10_000).utf8),
        ]
        for _ in 0..<40 {
            inputs.append((0..<Int(1 + rng.next() % 2_000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        for (i, input) in inputs.enumerated() {
            let client = try server.client()
            client.sendIgnoringClose(input)
            // Half-closed, as a client that has said all it will: a refused connection
            // lingers (drops input) until then, instead of `lingerNanoseconds`.
            _ = shutdown(client.fd, Int32(SHUT_WR))
            let closed = try client.waitForClose(timeoutSeconds: 10)
            let answer = client.leftover
            if closed {
                #expect(answer.isEmpty || answer.hasPrefix("HTTP/1.1 400 ") || answer.hasPrefix("HTTP/1.1 431 ")
                        || answer.hasPrefix("HTTP/1.1 505 ") || answer.hasPrefix("HTTP/1.1 413 "),
                        "input \(i): \(answer.prefix(80).debugDescription)")
            } else {
                // Only a prefix of a possible request may be left waiting (then the deadline closes it).
                #expect(answer.isEmpty, "input \(i)")
            }
        }
        let client = try server.client()
        #expect(try client.scrape().status == 200, "still serving after every hostile input")
    }
}
