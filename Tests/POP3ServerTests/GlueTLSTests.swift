import Glibc
import Reactor
import Testing
@testable import POP3Server
import TestSupport

/// STLS through the harness, with the test process as the TLS client (Reactor's
/// `TLSStream(client:)`); the certificate is a throwaway one made by the `openssl` command.
@Suite(.serialized) struct GlueTLSTests {
    /// Writes `mail.crt`/`mail.key` (self-signed, EC P-256, CN mail.example.org) into root.
    static func makeCertificate(in root: TempRoot) throws -> (cert: String, key: String) {
        let cert = root.path + "/mail.crt"
        let key = root.path + "/mail.key"
        try TestCertificate.make(certPath: cert, keyPath: key, commonName: "mail.example.org",
                                 dnsNames: ["mail.example.org"])
        return (cert, key)
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
