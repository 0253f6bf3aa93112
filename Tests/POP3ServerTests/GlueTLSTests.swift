import Glibc
import Reactor
import Testing
@testable import POP3Server

/// STLS through the harness, with the test process as the TLS client (Reactor's
/// `TLSStream(client:)`); the certificate is a throwaway one made by the `openssl` command.
@Suite(.serialized) struct GlueTLSTests {
    /// Writes `mail.crt`/`mail.key` (self-signed, EC P-256, CN mail.example.org) into root.
    static func makeCertificate(in root: TempRoot) throws -> (cert: String, key: String) {
        let cert = root.path + "/mail.crt"
        let key = root.path + "/mail.key"
        let status = run([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=mail.example.org",
            "-addext", "subjectAltName=DNS:mail.example.org", "-keyout", key, "-out", cert,
        ])
        guard status == 0 else { throw HarnessError("openssl req exited with \(status)") }
        return (cert, key)
    }

    /// Runs a command (PATH lookup) with stdout/stderr to /dev/null; its exit status.
    static func run(_ args: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        guard posix_spawnp(&pid, args[0], &actions, nil, &argv, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
    }

    static func tlsServer() throws -> ServerHarness {
        try ServerHarness { config, root in
            let (cert, key) = try makeCertificate(in: root)
            config.tlsCert = [cert]
            config.tlsKey = [key]
        }
    }

    /// RFC 2595 §4 / CVE-2011-0411: a command pipelined behind STLS in the same plaintext
    /// write must be discarded, not run after the handshake as if it had come through TLS.
    /// Here `USER alice` rides along with STLS; after the handshake PASS must fail for want
    /// of a USER, and a USER sent through TLS works as usual.
    @Test func commandsPipelinedAfterStlsAreDiscarded() throws {
        let server = try Self.tlsServer()
        let c = try server.client()
        #expect(try c.line().hasPrefix("+OK"))
        try c.send("STLS\r\nUSER alice\r\n")
        #expect(try c.line().hasPrefix("+OK"))
        try c.startTLS()
        #expect(try c.command("CAPA").hasPrefix("+OK"))
        let capa = try c.multiline()
        #expect(!capa.contains("STLS"), "STLS offered again after TLS: \(capa)")
        #expect(capa.contains("USER"), "\(capa)")
        let pass = try c.command("PASS secret")
        #expect(pass.hasPrefix("-ERR"), "the plaintext USER was used: \(pass)")
        #expect(try c.command("USER alice").hasPrefix("+OK"))
        #expect(try c.command("PASS secret").hasPrefix("+OK"))
        #expect(try c.command("STAT") == "+OK 0 0")
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        #expect(try c.waitForClose())
        #expect(try waitFor { try server.counts() == .zero })
    }

    /// The same attack with a complete login pipelined: nothing of it may count, so the
    /// session is still in AUTHORIZATION after the handshake.
    @Test func pipelinedLoginAfterStlsDoesNotLogIn() throws {
        let server = try Self.tlsServer()
        let c = try server.client()
        #expect(try c.line().hasPrefix("+OK"))
        try c.send("STLS\r\nUSER alice\r\nPASS secret\r\nSTAT\r\n")
        #expect(try c.line().hasPrefix("+OK"))
        try c.startTLS()
        #expect(try c.command("STAT").hasPrefix("-ERR"))
        #expect(try server.counts() == .init(connections: 1, unauthenticated: 1, loggedIn: 0))
        #expect(try c.command("QUIT").hasPrefix("+OK"))
    }
}
