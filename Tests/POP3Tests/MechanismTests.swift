import POP3
import Testing

/// Issue 10 item 5: the session offers only what the server enabled (`auth_mechanisms`),
/// so a client that trusts the offer (RFC 1939 §7 timestamp, RFC 2449 §6.3 SASL) is right.
@Suite struct MechanismTests {
    static func config(_ mechanisms: [SASLMechanism], apop: Bool, plaintext: Bool = true) -> SessionConfig {
        var config = Harness.config(plaintext: plaintext)
        config.saslMechanisms = mechanisms
        config.apopEnabled = apop
        return config
    }

    static let apopLine = "APOP alice " + String(repeating: "ab", count: 16) + "\r\n"

    @Test func greetingHasNoTimestampWithoutAPOP() {
        let harness = Harness(config: Self.config([.plain, .login], apop: false))
        #expect(harness.out.text == "+OK ready\r\n")
    }

    @Test func greetingHasTheTimestampWithAPOP() {
        let harness = Harness(config: Self.config([.plain, .login], apop: true))
        #expect(harness.out.text == "+OK ready <1234.1.1700000000@test.example>\r\n")
    }

    /// APOP is refused with the password logins while plaintext auth is refused, so its
    /// timestamp is not offered either.
    @Test func greetingHasNoTimestampWhileAPOPWouldBeRefused() {
        let harness = Harness(config: Self.config([.plain, .login], apop: true, plaintext: false))
        #expect(harness.out.text == "+OK ready\r\n")
    }

    @Test func apopRefusedWhenDisabled() {
        var harness = Harness(config: Self.config([.plain, .login], apop: false))
        harness.feed(Self.apopLine + "STAT\r\n")
        // Refused before any credential check: still in AUTHORIZATION.
        #expect(harness.replies == "-ERR APOP is not enabled on this server\r\n-ERR command not valid in this state\r\n")
        #expect(harness.session.counters.authFailures == 0)
    }

    @Test func apopWorksWhenEnabled() {
        var harness = Harness(config: Self.config([], apop: true))
        harness.feed(Self.apopLine)
        #expect(harness.replies == "+OK maildrop has 3 messages (117 octets)\r\n")
    }

    @Test func capaAndBareAuthListOnlyEnabledMechanisms() {
        var harness = Harness(config: Self.config([.plain, .login], apop: false))
        harness.feed("CAPA\r\nAUTH\r\n")
        #expect(harness.replies == "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
            + "PIPELINING\r\nUSER\r\nSASL PLAIN LOGIN\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\n"
            + "IMPLEMENTATION pop3d test\r\n.\r\n+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n")
    }

    @Test func configuredOrderIsCapaOrder() {
        var harness = Harness(config: Self.config([.scramSHA256, .plain], apop: false))
        harness.feed("AUTH\r\n")
        #expect(harness.replies == "+OK\r\nSCRAM-SHA-256\r\nPLAIN\r\n.\r\n")
    }

    @Test(arguments: ["CRAM-MD5", "SCRAM-SHA-256", "cram-md5"])
    func disabledMechanismRefused(_ name: String) {
        var harness = Harness(config: Self.config([.plain, .login], apop: false))
        harness.feed("AUTH \(name)\r\n")
        #expect(harness.replies == "-ERR unsupported authentication mechanism\r\n")
    }

    /// The default mechanisms are both plaintext: while plaintext auth is refused there
    /// is no SASL line at all, and no USER.
    @Test func noSASLLineWhilePlaintextRefused() {
        var harness = Harness(config: Self.config([.plain, .login], apop: false, plaintext: false))
        harness.feed("CAPA\r\nAUTH\r\n")
        #expect(harness.replies == "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
            + "PIPELINING\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\nIMPLEMENTATION pop3d test\r\n.\r\n+OK\r\n.\r\n")
    }
}
