import Testing

@testable import POP3Server

/// Issue 17: what a new session takes from `auth_mechanisms` is computed once per configuration
/// (and again when a reload replaces it), and the APOP timestamp is formatted only when APOP or
/// CRAM-MD5 can use it.
@Suite struct SessionConfigCacheTests {
    @Test func noTimestampWithoutAPOPOrCRAM() throws {
        let server = try ServerHarness()
        defer { server.stop() }
        let c = try server.client()
        #expect(try c.line() == "+OK POP3 server ready")
        let (stamp, mechanisms) = try server.onLoop { side in
            let config = side.service.makeSessionConfig(address: nil, local: nil, tlsActive: false, stlsAvailable: false)
            return (config.apopTimestamp, config.saslMechanisms.map { "\($0)" })
        }
        #expect(stamp == "")
        #expect(mechanisms == ["plain", "login"])
    }

    @Test func apopGreetingHasAFreshTimestamp() throws {
        let server = try ServerHarness { config, _ in config.authMechanisms = [.plain, .apop] }
        defer { server.stop() }
        let first = try server.client().line()
        let second = try server.client().line()
        for greeting in [first, second] {
            #expect(greeting.hasPrefix("+OK POP3 server ready <") && greeting.hasSuffix(">"), "\(greeting)")
        }
        #expect(first != second)  // RFC 1939 §7: a timestamp per greeting
    }

    @Test func replacedConfigurationIsUsedByTheNextSession() throws {
        let server = try ServerHarness()
        defer { server.stop() }
        let (stamp, mechanisms) = try server.onLoop { side in
            side.service.config.authMechanisms = [.plain, .cramMD5]
            let config = side.service.makeSessionConfig(address: nil, local: nil, tlsActive: false, stlsAvailable: false)
            return (config.apopTimestamp, config.saslMechanisms.map { "\($0)" })
        }
        #expect(stamp.hasPrefix("<") && stamp.hasSuffix(">") && stamp.contains("@"), "\(stamp)")
        #expect(mechanisms == ["plain", "cramMD5"])
        let back = try server.onLoop { side in
            side.service.config.authMechanisms = [.login]
            let config = side.service.makeSessionConfig(address: nil, local: nil, tlsActive: false, stlsAvailable: false)
            return config.apopTimestamp + "|" + config.saslMechanisms.map { "\($0)" }.joined(separator: ",")
        }
        #expect(back == "|login")
    }
}
