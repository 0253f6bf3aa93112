import Testing
import Glibc
@testable import Auth

@Suite struct PasswdFileTests {
    static let sample = """
    # comment line
    alice:{PLAIN}wonderland:1000:1000:Alice A:/home/alice:/bin/false:userdb_quota_rule=*:storage=1G mail=x

    bob:{SHA512-CRYPT}$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.
    carol:{ROT13}frperg::::
    dave:{SHA256}not-base64!
    eve
    frank:abNANd1rDfiNc
    alice:{PLAIN}second
    grace:{SSHA}c2FsdA==
    heidi:{CLEARTEXT}pw\r
    ivan:{SHA256
      # indented comment
    """

    func parsed() -> (PasswdFile, [Diagnostic]) {
        PasswdFile.parse(Array(Self.sample.utf8), path: "/etc/pop3d/passwd")
    }

    @Test func goodLinesBecomeEntriesWithAllFields() throws {
        let (file, _) = parsed()
        let alice = try #require(file.lookup("alice"))
        #expect(alice.scheme == .plain)
        #expect(alice.secret == Array("wonderland".utf8))
        #expect(alice.uid == "1000" && alice.gid == "1000")
        #expect(alice.gecos == "Alice A")
        #expect(alice.home == "/home/alice")
        #expect(alice.shell == "/bin/false")
        #expect(alice.extraFields == ["userdb_quota_rule=*:storage=1G", "mail=x"])
        let bob = try #require(file.lookup("bob"))
        #expect(bob.scheme == .sha512Crypt && bob.home == nil && bob.uid == nil)
        // No {SCHEME}: CRYPT, as in Dovecot's passwd-file.
        #expect(file.lookup("frank")?.scheme == .crypt)
        // CRLF line endings are tolerated.
        #expect(file.lookup("heidi")?.secret == Array("pw".utf8))
        #expect(file.count == 4)
        #expect(file.lookup("Alice") == nil)
    }

    @Test func badLinesAreDiagnosedWithLineNumbersAndCannotLogIn() {
        let (file, diags) = parsed()
        let byLine = Dictionary(grouping: diags, by: \.line)
        #expect(byLine[5]?.first?.message.contains("unknown password scheme {ROT13}") == true)
        #expect(byLine[6]?.first?.message.contains("not valid base64") == true)
        #expect(byLine[7]?.first?.message.contains("no password") == true)
        #expect(byLine[9]?.first?.message.contains("duplicate") == true)
        #expect(byLine[10]?.first?.message.contains("too short") == true)
        #expect(byLine[12]?.first?.message.contains("unterminated") == true)
        #expect(diags.count == 6)
        #expect(diags.allSatisfy { $0.path == "/etc/pop3d/passwd" })
        #expect(diags[0].description.hasPrefix("/etc/pop3d/passwd:5: "))
        for user in ["carol", "dave", "eve", "grace", "ivan"] {
            #expect(file.lookup(user) == nil)
        }
        // The first alice line wins.
        #expect(file.lookup("alice")?.secret == Array("wonderland".utf8))
        // Diagnostics never echo secrets.
        #expect(!diags.contains { $0.message.contains("not-base64") || $0.message.contains("c2FsdA") })
    }

    @Test func loadReadsAFileAndThrowsWhenUnreadable() throws {
        var template = Array("/tmp/authtest-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        #expect(fd >= 0)
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { unlink(path) }
        let text = Array("u:{PLAIN}p\nv:{NOPE}x\n".utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let (file, diags) = try PasswdFile.load(path: path)
        #expect(file.lookup("u") != nil)
        #expect(diags.map(\.line) == [2])
        #expect(diags.first?.path == path)
        #expect(throws: PasswdFileError.self) { try PasswdFile.load(path: "/nonexistent/passwd") }
    }

    @Test func verifyOrDummyTreatsUnknownUserLikeWrongPassword() {
        let (file, _) = parsed()
        #expect(file.verifyOrDummy(user: "alice", password: Array("wonderland".utf8))?.user == "alice")
        #expect(file.verifyOrDummy(user: "alice", password: Array("wrong".utf8)) == nil)
        #expect(file.verifyOrDummy(user: "nobody", password: Array("wonderland".utf8)) == nil)
        #expect(file.verifyOrDummy(user: "bob", password: Array("secret".utf8))?.user == "bob")
        // The dummy has the commonest scheme's cost; empty file → SHA512-CRYPT.
        let (empty, _) = PasswdFile.parse([], path: "x")
        #expect(empty.dummyEntry.scheme == .sha512Crypt)
        #expect(empty.verifyOrDummy(user: "x", password: []) == nil)
    }
}
