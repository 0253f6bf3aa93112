import Glibc
import Testing
import POP3
@testable import POP3Server

/// `pop3_enable_last` and `pop3_client_workarounds` through the glue: the keys, the `LAST`
/// metric label, and a SIGHUP between connect and RETR that cannot split the size rule.
@Suite(.serialized) struct OldClientsGlueTests {
    @Test func keysParseAndBadWordsNameTheKey() async throws {
        let off = try await ServerConfig.load(flags: [:], environment: [:], configFile: nil)
        #expect(off.pop3EnableLast == false)
        #expect(off.pop3ClientWorkarounds.isEmpty)
        let on = try await ServerConfig.load(flags: [:], environment: [
            "POP3D_POP3_ENABLE_LAST": "yes", "POP3D_POP3_CLIENT_WORKAROUNDS": "OE-NS-EOH,outlook-no-nuls",
        ], configFile: nil)
        #expect(on.pop3EnableLast)
        #expect(on.pop3ClientWorkarounds == [.oeNsEoh, .outlookNoNuls])
        for bad in ["outlook", "oe-ns-eoh,tb-extra-mailbox-sep"] {
            do {
                _ = try await ServerConfig.load(flags: [:], environment: ["POP3D_POP3_CLIENT_WORKAROUNDS": bad], configFile: nil)
                Issue.record("'\(bad)' was accepted")
            } catch let error as ConfigError {
                #expect(error.description.hasPrefix("pop3_client_workarounds: '"), "\(error)")
            }
        }
    }

    /// YAML as Dovecot's configuration writes it: one space-separated string; or a list.
    @Test func yamlTakesDovecotsSpaceSeparatedWordsAndLists() async throws {
        for (text, want) in [
            ("pop3_enable_last: true\npop3_client_workarounds: outlook-no-nuls oe-ns-eoh\n", ClientWorkarounds([.outlookNoNuls, .oeNsEoh])),
            ("pop3_client_workarounds:\n  - oe-ns-eoh\n", ClientWorkarounds.oeNsEoh),
        ] {
            let path = "/tmp/pop3d-oldclients-\(getpid()).yaml"
            try #require(text.withCString { s in
                guard let f = fopen(path, "w") else { return false }
                defer { fclose(f) }
                return fputs(s, f) >= 0
            })
            defer { unlink(path) }
            let c = try await ServerConfig.load(flags: [:], environment: [:], configFile: path)
            #expect(c.pop3ClientWorkarounds == want)
            #expect(c.pop3EnableLast == text.hasPrefix("pop3_enable_last: true"))
        }
    }

    /// The metric's `LAST` label comes from `CommandKeyword.allCases`: counted when LAST is on,
    /// `unknown` when off.
    @Test func lastHasItsOwnMetricLabel() throws {
        for enabled in [true, false] {
            let server = try ServerHarness { config, _ in config.pop3EnableLast = enabled }
            defer { server.stop() }
            try server.onLoop { side in side.service.enableMetrics() }
            try server.deliver("alice", Array("Subject: x\r\n\r\nline\r\n".utf8))
            let c = try server.client()
            _ = try c.line()
            #expect(try c.command("USER alice").hasPrefix("+OK"))
            #expect(try c.command("PASS secret").hasPrefix("+OK"))
            #expect(try c.command("LAST") == (enabled ? "+OK 0" : "-ERR unknown command"))
            #expect(try c.command("QUIT").hasPrefix("+OK"))
            #expect(try c.waitForClose())
            let s = MetricsTests.samples(try MetricsTests.scrape(server))
            #expect(s[#"pop3d_commands_total{command="LAST"}"#] == (enabled ? 1 : 0))
            #expect(s[#"pop3d_commands_total{command="unknown"}"#] == (enabled ? 0 : 1))
        }
    }

    /// A session keeps the workarounds it connected with: a reload that turns `oe-ns-eoh` on
    /// after its login must not make RETR send 2 octets more than LIST said.
    @Test func aReloadDoesNotSplitListFromRetr() throws {
        let server = try ServerHarness()
        defer { server.stop() }
        try server.deliver("alice", Array("Subject: headers only\r\n".utf8))
        let c = try server.client()
        _ = try c.line()
        #expect(try c.command("USER alice").hasPrefix("+OK"))
        #expect(try c.command("PASS secret").hasPrefix("+OK"))
        #expect(try c.command("LIST 1") == "+OK 1 23")
        try server.onLoop { side in side.service.config.pop3ClientWorkarounds = [.oeNsEoh] }
        #expect(try c.command("RETR 1") == "+OK 23 octets")
        #expect(try c.multiline() == ["Subject: headers only"])
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        // A new session has the new rule, for its listing and its RETR alike.
        let d = try server.client()
        _ = try d.line()
        #expect(try d.command("USER alice").hasPrefix("+OK"))
        #expect(try d.command("PASS secret").hasPrefix("+OK"))
        #expect(try d.command("LIST 1") == "+OK 1 25")
        #expect(try d.command("RETR 1") == "+OK 25 octets")
        #expect(try d.multiline() == ["Subject: headers only", ""])
        #expect(try d.command("QUIT").hasPrefix("+OK"))
    }
}
