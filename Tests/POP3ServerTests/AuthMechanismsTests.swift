import Auth
import Glibc
import Testing

@testable import POP3Server

/// Issue 10 item 5: `auth_mechanisms` (Dovecot's setting) and the start-up/reload warning.
@Suite struct AuthMechanismsTests {
    @Test func defaultOffersOnlyWhatWorksWithAnySecret() async throws {
        let c = try await ServerConfig.load(flags: [:], environment: [:], configFile: nil)
        #expect(c.authMechanisms == [.plain, .login])
    }

    @Test(arguments: [
        ("plain login cram-md5", [AuthMechanism.plain, .login, .cramMD5]),
        ("PLAIN,SCRAM-SHA-256, apop", [.plain, .scramSHA256, .apop]),
        ("apop apop  plain", [.apop, .plain]),
    ])
    func environmentValue(_ value: String, _ expected: [AuthMechanism]) async throws {
        let c = try await ServerConfig.load(
            flags: [:], environment: ["POP3D_AUTH_MECHANISMS": value], configFile: nil)
        #expect(c.authMechanisms == expected)
    }

    @Test func yamlListAndString() async throws {
        for (yaml, expected) in [
            ("auth_mechanisms: [plain, cram-md5]\n", [AuthMechanism.plain, .cramMD5]),
            ("auth_mechanisms: \"login scram-sha-256\"\n", [.login, .scramSHA256]),
        ] {
            try await withConfigFile(yaml) { path in
                let c = try await ServerConfig.load(flags: [:], environment: [:], configFile: path)
                #expect(c.authMechanisms == expected)
            }
        }
    }

    @Test(arguments: ["digest-md5", "plain gssapi", ""])
    func badValueNamesTheKey(_ value: String) async {
        do {
            _ = try await ServerConfig.load(flags: [:], environment: ["POP3D_AUTH_MECHANISMS": value], configFile: nil)
            Issue.record("accepted auth_mechanisms '\(value)'")
        } catch {
            #expect("\(error)".hasPrefix("auth_mechanisms: "), "\(error)")
        }
    }

    @Test func warningsNameMechanismCountAndScheme() {
        let users: [PasswordScheme: Int] = [.plain: 3, .sha512Crypt: 12, .blfCrypt: 1, .scramSHA256: 2]
        let lines = AuthMechanism.warnings(enabled: [.plain, .login, .cramMD5, .scramSHA256, .apop], usersByScheme: users)
        #expect(lines == [
            "auth_mechanisms: cram-md5 is enabled but 12 users have SHA512-CRYPT secrets and 2 users have SCRAM-SHA-256 secrets and 1 user has BLF-CRYPT secrets it cannot use",
            "auth_mechanisms: scram-sha-256 is enabled but 12 users have SHA512-CRYPT secrets and 1 user has BLF-CRYPT secrets it cannot use",
            "auth_mechanisms: apop is enabled but 12 users have SHA512-CRYPT secrets and 2 users have SCRAM-SHA-256 secrets and 1 user has BLF-CRYPT secrets it cannot use",
        ])
        #expect(AuthMechanism.warnings(enabled: [.plain, .login], usersByScheme: users).isEmpty)
        #expect(AuthMechanism.warnings(enabled: [.cramMD5, .apop, .scramSHA256], usersByScheme: [.plain: 5]).isEmpty)
    }

    @Test func usersBySchemeCountsEveryEntry() {
        let text = "a:{PLAIN}x::::::\nb:{SHA512-CRYPT}$6$s$h::::::\nc:{SHA512-CRYPT}$6$t$i::::::\n"
        let (file, _) = PasswdFile.parse(Array(text.utf8), path: "test")
        #expect(file.usersByScheme == [.plain: 1, .sha512Crypt: 2])
    }
}
