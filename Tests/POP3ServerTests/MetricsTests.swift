import Glibc
import Testing
@testable import POP3Server

/// The metrics of one process (Metrics.swift), read as a scrape would read them: a real
/// session through a socket, then the rendered exposition text.
@Suite(.serialized) struct MetricsTests {
    /// `name{labels} value` lines of an exposition text, by `name{labels}`.
    static func samples(_ text: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = value
        }
        return out
    }

    static func scrape(_ server: ServerHarness) throws -> String {
        try onLoopText(server) { side in
            var buffer: [UInt8] = []
            side.service.renderMetrics(into: &buffer)
            return buffer
        }
    }

    static func onLoopText(_ server: ServerHarness, _ body: @escaping @Sendable (LoopSide) -> [UInt8]) throws -> String {
        String(decoding: try server.onLoop(body), as: UTF8.self)
    }

    static func metricsServer(users: [ServerHarness.User] = [.plain("alice", "secret"), .plain("bob", "secret")]) throws -> ServerHarness {
        let server = try ServerHarness(users: users) { config, _ in
            config.trustedNetworks = ["127.0.0.0/8"]  // no failure penalty: the test does many failures
        }
        try server.onLoop { side in side.service.enableMetrics() }
        return server
    }

    /// One scripted session and one failed login give exactly the counts they must.
    @Test func aSessionCountsWhatItDid() throws {
        let server = try Self.metricsServer()
        let first = Array("Subject: one\r\n\r\nfirst body\r\n".utf8)
        let second = Array("Subject: two\r\n\r\n.dot line\r\nsecond\r\n".utf8)
        try server.deliver("alice", first)
        try server.deliver("alice", second)
        try server.deliver("alice", Array("Subject: three\r\n\r\nthird\r\n".utf8))

        let bad = try server.client()
        _ = try bad.line()
        #expect(try bad.command("USER alice").hasPrefix("+OK"))
        #expect(try bad.command("PASS wrong").hasPrefix("-ERR [AUTH]"))
        #expect(try bad.command("QUIT").hasPrefix("+OK"))
        #expect(try bad.waitForClose())

        let c = try server.client()
        _ = try c.line()
        #expect(try c.command("CAPA").hasPrefix("+OK"))
        _ = try c.multiline()
        #expect(try c.command("BOGUS").hasPrefix("-ERR"))
        #expect(try c.command("USER alice").hasPrefix("+OK"))
        #expect(try c.command("PASS secret").hasPrefix("+OK"))
        let list = try c.command("LIST")
        #expect(list.hasPrefix("+OK"))
        let listing = try c.multiline()
        let sizes = listing.compactMap { line in line.split(separator: " ").last.flatMap { Int($0) } }
        #expect(sizes.count == 3)
        #expect(try c.command("RETR 1").hasPrefix("+OK"))
        _ = try c.multiline()
        #expect(try c.command("RETR 2").hasPrefix("+OK"))
        _ = try c.multiline()
        #expect(try c.command("DELE 3").hasPrefix("+OK"))
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        #expect(try c.waitForClose())
        #expect(try waitFor { try server.counts() == .zero })

        let s = Self.samples(try Self.scrape(server))
        #expect(s[#"pop3d_logins_total{mechanism="user",result="ok"}"#] == 1)
        #expect(s[#"pop3d_logins_total{mechanism="user",result="auth_failed"}"#] == 1)
        #expect(s[#"pop3d_connections_accepted_total{listener="pop3"}"#] == 2)
        #expect(s[#"pop3d_sessions_ended_total{reason="quit"}"#] == 2)
        #expect(s["pop3d_retrieved_messages_total"] == 2)
        #expect(s["pop3d_retrieved_bytes_total"] == Double(sizes[0] + sizes[1]))
        #expect(s["pop3d_deleted_messages_total"] == 1)
        #expect(s[#"pop3d_commands_total{command="RETR"}"#] == 2)
        #expect(s[#"pop3d_commands_total{command="USER"}"#] == 2)
        #expect(s[#"pop3d_commands_total{command="CAPA"}"#] == 1)
        #expect(s[#"pop3d_commands_total{command="unknown"}"#] == 1)
        #expect(s[#"pop3d_commands_total{command="QUIT"}"#] == 2)
        #expect(s[#"pop3d_sessions{state="transaction"}"#] == 0)
        #expect(s[#"pop3d_sessions{state="authorization"}"#] == 0)
        // Every turn of the loop is in the histogram.
        #expect((s[#"pop3d_loop_turn_duration_seconds_count"#] ?? 0) > 0)
        #expect(s[#"pop3d_loop_turn_duration_seconds_bucket{le="+Inf"}"#] == s["pop3d_loop_turn_duration_seconds_count"])
        #expect((s["pop3d_start_time_seconds"] ?? 0) > 1_700_000_000)
    }

    /// The mechanism label comes from the login request: SASL PLAIN is `plain`, not `user`;
    /// a malformed SASL response is a failed login of its mechanism. TOP counts.
    @Test func saslLoginsCountUnderTheirMechanism() throws {
        let server = try Self.metricsServer()
        try server.deliver("bob", Array("Subject: x\r\n\r\nline\r\n".utf8))
        let c = try server.client()
        _ = try c.line()
        // "bob\0secret" (one NUL: malformed PLAIN), then "\0bob\0secret".
        #expect(try c.command("AUTH PLAIN Ym9iAHNlY3JldA==").hasPrefix("-ERR"))
        #expect(try c.command("AUTH PLAIN AGJvYgBzZWNyZXQ=").hasPrefix("+OK"))
        #expect(try c.command("TOP 1 0").hasPrefix("+OK"))
        _ = try c.multiline()
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        #expect(try c.waitForClose())
        #expect(try waitFor { try server.counts() == .zero })
        let s = Self.samples(try Self.scrape(server))
        #expect(s[#"pop3d_logins_total{mechanism="plain",result="ok"}"#] == 1)
        #expect(s[#"pop3d_logins_total{mechanism="plain",result="auth_failed"}"#] == 1)
        #expect(s[#"pop3d_logins_total{mechanism="user",result="ok"}"#] == 0)
        #expect(s["pop3d_top_messages_total"] == 1)
        #expect(s[#"pop3d_commands_total{command="AUTH"}"#] == 2)
        #expect(s[#"pop3d_commands_total{command="TOP"}"#] == 1)
    }

    /// Sessions by state while they are open: one before login, one after.
    @Test func sessionsGaugeFollowsTheStates() throws {
        let server = try Self.metricsServer()
        let a = try server.client()
        _ = try a.line()
        let b = try server.client()
        _ = try b.line()
        #expect(try b.command("USER bob").hasPrefix("+OK"))
        #expect(try b.command("PASS secret").hasPrefix("+OK"))
        let s = Self.samples(try Self.scrape(server))
        #expect(s[#"pop3d_sessions{state="authorization"}"#] == 1)
        #expect(s[#"pop3d_sessions{state="transaction"}"#] == 1)
        #expect(s[#"pop3d_sessions{state="update"}"#] == 0)
        a.close()
        b.close()
    }

    /// The series set is fixed: 300 distinct unknown users add no series,
    /// and no name appears in the text.
    @Test func seriesDoNotGrowWithUsers() throws {
        let server = try Self.metricsServer()
        let before = Self.samples(try Self.scrape(server)).count
        for i in 0..<150 {
            let c = try server.client()
            _ = try c.line()
            for j in 0..<2 {
                #expect(try c.command("USER ghost\(i)x\(j)").hasPrefix("+OK"))
                #expect(try c.command("PASS nope").hasPrefix("-ERR"))
            }
            c.close()
        }
        let text = try Self.scrape(server)
        #expect(Self.samples(text).count == before)
        #expect(!text.contains("ghost"))
        #expect(!text.contains("127.0.0.1"))
    }

    /// Metrics off (the default): nothing is rendered and nothing is counted.
    @Test func offRendersNothing() throws {
        let server = try ServerHarness()
        let c = try server.client()
        _ = try c.line()
        #expect(try c.command("NOOP").hasPrefix("-ERR"))
        c.close()
        #expect(try Self.scrape(server).isEmpty)
    }
}

extension MetricsTests {
    /// Every family has one HELP and one TYPE line (promtool lints a missing HELP).
    @Test func renderedTextHasHelpAndTypeForEveryFamily() throws {
        let server = try Self.metricsServer()
        let text = try Self.scrape(server)
        var families: Set<String> = []
        var typed: Set<String> = []
        var helped: Set<String> = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            if line.hasPrefix("# TYPE ") { typed.insert(String(words[2])) }
            else if line.hasPrefix("# HELP ") { helped.insert(String(words[2])) }
            else if let name = words.first?.split(separator: "{").first {
                families.insert(String(name))
            }
        }
        #expect(typed == helped)
        // Every family of the catalogue but the master's own two.
        #expect(typed == Set(HelpedPrometheusFactory.help.keys).subtracting(["pop3d_workers", "pop3d_worker_restarts_total"]))
        for family in families {
            let base = ["_bucket", "_sum", "_count"].reduce(family) { name, suffix in
                name.hasSuffix(suffix) && typed.contains(String(name.dropLast(suffix.count))) ? String(name.dropLast(suffix.count)) : name
            }
            #expect(typed.contains(base), "\(family) has no TYPE line")
        }
    }
}
