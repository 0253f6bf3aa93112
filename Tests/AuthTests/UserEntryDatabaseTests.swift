import Testing
@testable import Auth

/// `UserEntry.fromDatabase` (SQL's `password`, `home`, `mail` columns, issue 15) shares the
/// passwd-file's stored-password parser: the same text gives the same scheme, encoding and
/// secret from either source, and the same refusals.
@Suite struct UserEntryDatabaseTests {
    static let scram = "{SCRAM-SHA-256}4096,c2FsdA==,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    static let blf = "{BLF-CRYPT}$2y$12$abcdefghijklmnopqrstuuT1Iwu6o8Wx7BoOyIMHfgVJq6JO/IJhW"

    @Test(arguments: SchemeTests.vectors.map(\.0) + [scram, blf])
    func aStoredPasswordParsesAsInThePasswdFile(stored: String) throws {
        let fromFile = try SchemeTests.entry(stored)
        let fromDB = try UserEntry.fromDatabase(user: "u", password: Array(stored.utf8), home: nil, mail: nil).get()
        #expect(fromDB.scheme == fromFile.scheme)
        #expect(fromDB.encoding == fromFile.encoding)
        #expect(fromDB.secret == fromFile.secret)
        #expect(fromDB.user == "u")
        if stored != Self.scram {
            #expect(verify(password: Array("secret".utf8), entry: fromDB))
            #expect(!verify(password: Array("Secret".utf8), entry: fromDB))
        }
    }

    @Test func homeAndMailComeFromTheirColumns() throws {
        let e = try UserEntry.fromDatabase(user: "alice@example.org", password: Array("{PLAIN}wonderland".utf8),
                                           home: "/srv/mail/example.org/alice", mail: "maildir:~/Maildir").get()
        #expect(e.user == "alice@example.org")
        #expect(e.scheme == .plain && e.hasPlainSecret)
        #expect(e.secret == Array("wonderland".utf8))
        #expect(e.home == "/srv/mail/example.org/alice")
        #expect(e.mail == "maildir:~/Maildir")
        #expect(e.uid == nil && e.gid == nil && e.extraFields.isEmpty)
        let bare = try UserEntry.fromDatabase(user: "bob", password: Array("{PLAIN}x".utf8), home: nil, mail: nil).get()
        #expect(bare.home == nil && bare.mail == nil)
    }

    /// Refusals name the user and the reason, never the secret.
    @Test(arguments: [
        ("", "empty or not UTF-8"),
        ("{ROT13}hunter2xyz", "unknown password scheme {ROT13}"),
        ("{SHA256}hunter2xyz!", "not valid base64"),
        ("{SHA256.HEX}hunter2xyz", "not valid hex"),
        ("{SHA256", "unterminated"),
        ("{SHA512-CRYPT}$5$hunter2xyz$abc", "does not start with $6$"),
        ("{BLF-CRYPT}$2b$31$hunter2xyz" + String(repeating: "a", count: 43), "bcrypt cost 31 above the limit"),
        ("{SCRAM-SHA-256}10000000,hunter2xyz", "iteration count 10000000 above the limit"),
    ])
    func unusablePasswordsAreRefusedWithoutTheSecret(stored: String, reason: String) {
        let result = UserEntry.fromDatabase(user: "carol@example.org", password: Array(stored.utf8), home: nil, mail: nil)
        guard case .failure(let problem) = result else {
            Issue.record("accepted \(stored)")
            return
        }
        #expect(problem.message.contains(reason), "\(problem.message)")
        #expect(problem.message.contains("carol@example.org"))
        #expect(!problem.message.contains("hunter2"), "the secret leaked into \(problem.message)")
        // The passwd-file refuses the same text (shared parser), unless it cannot be a field.
        if !stored.isEmpty {
            let (file, diagnostics) = PasswdFile.parse(Array("carol:\(stored)".utf8), path: "t")
            #expect(file.lookup("carol") == nil)
            #expect(diagnostics.count == 1)
        }
    }

    @Test func aPasswordThatIsNotUTF8IsRefused() {
        let result = UserEntry.fromDatabase(user: "dave", password: [0x7b, 0x50, 0x4c, 0x41, 0x49, 0x4e, 0x7d, 0xff, 0xfe],
                                            home: nil, mail: nil)
        guard case .failure(let problem) = result else {
            Issue.record("accepted a password that is not UTF-8")
            return
        }
        #expect(problem.message.contains("not UTF-8"))
    }
}
