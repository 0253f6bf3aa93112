import ByteCodec
import POP3
import Testing

func b64(_ text: String) -> String { String(decoding: Base64.encode(Array(text.utf8)), as: UTF8.self) }

let capaBefore = "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\n"
    + "SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\nIMPLEMENTATION pop3d test\r\n.\r\n"

let saslExchanges: [Exchange] = [
    Exchange(
        name: "AUTH PLAIN initial response", input: "AUTH PLAIN " + b64("\0alice\0secret") + "\r\nSTAT\r\n",
        output: "+OK maildrop has 3 messages (117 octets)\r\n+OK 3 117\r\n"),
    Exchange(
        name: "AUTH PLAIN continuation, lower-case name", input: "AUTH plain\r\n" + b64("alice\0alice\0secret") + "\r\n",
        output: "+ \r\n+OK maildrop has 3 messages (117 octets)\r\n"),
    Exchange(
        name: "AUTH PLAIN foreign authzid", input: "AUTH PLAIN " + b64("bob\0alice\0secret") + "\r\n",
        output: "-ERR [AUTH] authentication failed\r\n"),
    Exchange(
        name: "AUTH PLAIN = is empty response", input: "AUTH PLAIN =\r\n",
        output: "-ERR [AUTH] authentication failed\r\n"),
    Exchange(
        name: "AUTH PLAIN bad base64", input: "AUTH PLAIN AAA=BBB\r\nAUTH PLAIN\r\n=AAA\r\n",
        output: "-ERR invalid base64 in initial response\r\n+ \r\n-ERR invalid base64 in authentication response\r\n"),
    Exchange(
        name: "AUTH cancel", input: "AUTH PLAIN\r\n*\r\nQUIT\r\n",
        output: "+ \r\n-ERR authentication cancelled\r\n+OK POP3 server signing off\r\n"),
    Exchange(
        name: "AUTH LOGIN", input: "AUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64("secret") + "\r\n",
        output: "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK maildrop has 3 messages (117 octets)\r\n"),
    Exchange(
        name: "AUTH LOGIN user as initial response", input: "AUTH LOGIN " + b64("alice") + "\r\n" + b64("secret") + "\r\n",
        output: "+ UGFzc3dvcmQ6\r\n+OK maildrop has 3 messages (117 octets)\r\n"),
    Exchange(
        name: "AUTH CRAM-MD5", input: "AUTH CRAM-MD5\r\n" + b64("alice " + String(repeating: "cd", count: 16)) + "\r\n",
        output: "+ " + b64("<1234.1.1700000000.1@test.example>") + "\r\n+OK maildrop has 3 messages (117 octets)\r\n"),
    Exchange(
        name: "AUTH CRAM-MD5 refuses initial response", input: "AUTH CRAM-MD5 " + b64("x") + "\r\n",
        output: "-ERR this mechanism does not take an initial response\r\n"),
    Exchange(
        name: "AUTH SCRAM relay", input: "AUTH SCRAM-SHA-256 " + b64("n,,n=alice,r=abc") + "\r\n"
            + b64("proof-ok") + "\r\n\r\nSTAT\r\n",
        output: "+ " + b64("r=abcdef,s=c2FsdA==,i=4096") + "\r\n+ " + b64("v=ok") + "\r\n"
            + "+OK maildrop has 3 messages (117 octets)\r\n+OK 3 117\r\n"),
    Exchange(
        name: "AUTH SCRAM wrong proof", input: "AUTH SCRAM-SHA-256\r\n" + b64("n,,n=alice,r=abc") + "\r\n"
            + b64("proof-bad") + "\r\n",
        output: "+ \r\n+ " + b64("r=abcdef,s=c2FsdA==,i=4096") + "\r\n-ERR [AUTH] authentication failed\r\n"),
    Exchange(
        name: "AUTH unknown mechanism", input: "AUTH GSSAPI\r\n", output: "-ERR unsupported authentication mechanism\r\n"),
    Exchange(
        name: "bare AUTH lists mechanisms", input: "AUTH\r\n",
        output: "+OK\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\nSCRAM-SHA-256\r\n.\r\n"),
    Exchange(
        name: "bare AUTH without plaintext", input: "AUTH\r\nAUTH PLAIN\r\n",
        output: "+OK\r\nCRAM-MD5\r\nSCRAM-SHA-256\r\n.\r\n"
            + "-ERR [AUTH] plaintext authentication disallowed on non-secure connections\r\n",
        plaintext: false),
    Exchange(
        name: "long SASL continuation allowed", input: "AUTH PLAIN\r\n" + b64("\0alice\0" + String(repeating: "x", count: 400)) + "\r\n",
        output: "+ \r\n-ERR [AUTH] authentication failed\r\n"),
    Exchange(name: "CAPA before login", input: "CAPA\r\n", output: capaBefore),
    Exchange(name: "CAPA after login", input: login + "CAPA\r\n", output: loginReply + capaBefore),
    Exchange(
        name: "CAPA without plaintext", input: "CAPA\r\n",
        output: "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
            + "SASL CRAM-MD5 SCRAM-SHA-256\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\nIMPLEMENTATION pop3d test\r\n.\r\n",
        plaintext: false),
    Exchange(name: "STLS not available", input: "STLS\r\n", output: "-ERR STLS not available\r\n"),
]

/// `saslExchanges` run in `SessionTests.exchangeTable` with the session's table.
@Suite struct SASLAndCapaTests {
    /// CVE-2011-0411 class: plaintext after STLS in the same write is discarded.
    @Test func stlsDiscardsInjectedCommands() {
        var harness = Harness(config: Harness.config(plaintext: false, stls: true))
        harness.feed("CAPA\r\n")
        #expect(harness.replies.contains("STLS\r\n"))
        #expect(!harness.replies.contains("USER\r\n"))
        harness.out = ByteArraySink()
        harness.feed("STLS\r\nCAPA\r\n")
        #expect(harness.out.text == "+OK begin TLS negotiation\r\n")
        harness.out = ByteArraySink()
        harness.feed("CAPA\r\nSTLS\r\n")
        // After TLS: no STLS, plaintext mechanisms and USER offered, STLS refused.
        #expect(harness.out.text == capaBefore + "-ERR STLS not available\r\n")
    }

    @Test func stlsNotOfferedAfterLogin() {
        var harness = Harness(config: Harness.config(plaintext: true, stls: true))
        harness.feed(login + "CAPA\r\n")
        #expect(harness.replies == loginReply + capaBefore)
    }

    @Test func customCapabilities() {
        var config = Harness.config()
        config.implementation = nil
        config.expire = "30"
        config.loginDelaySeconds = 900
        config.saslMechanisms = []
        var harness = Harness(config: config)
        harness.feed("CAPA\r\n")
        #expect(harness.replies == "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
            + "PIPELINING\r\nUSER\r\nEXPIRE 30\r\nLOGIN-DELAY 900\r\n.\r\n")
    }

    @Test(arguments: [
        ("", [UInt8]()), ("Zg==", Array("f".utf8)), ("Zm8=", Array("fo".utf8)), ("Zm9v", Array("foo".utf8)),
        ("Zm9vYg==", Array("foob".utf8)), ("Zm9vYmE=", Array("fooba".utf8)), ("Zm9vYmFy", Array("foobar".utf8)),
    ])
    func base64RoundTrip(_ encoded: String, _ decoded: [UInt8]) {
        #expect(Base64.decode(Array(encoded.utf8)) == decoded)
        #expect(Base64.encode(decoded) == Array(encoded.utf8))
    }

    @Test(arguments: ["=AAA", "AAA=BBBB", "Zm9", "Zm9v\r\n", "Zm 9", "Zh==", "Zm9=", "Zg=A", "Zm9v====", "Z\u{0}9v"])
    func base64RejectsMalformed(_ encoded: String) {
        #expect(Base64.decode(Array(encoded.utf8)) == nil)
    }

    @Test func plainParsing() {
        #expect(SASLPlain.parse(Array("\0u\0p".utf8)).flatMap(SASLPlain.userToLogIn) == "u")
        #expect(SASLPlain.parse(Array("u\0u\0p".utf8)).flatMap(SASLPlain.userToLogIn) == "u")
        #expect(SASLPlain.parse(Array("z\0u\0p".utf8)).flatMap(SASLPlain.userToLogIn) == nil)
        // Compared as octets: KELVIN SIGN + "im" is not "Kim", though the Strings are equal.
        #expect(SASLPlain.parse(Array("\u{212A}im\0Kim\0p".utf8)).flatMap(SASLPlain.userToLogIn) == nil)
        #expect(SASLPlain.parse(Array("\0\0p".utf8)) == nil)
        #expect(SASLPlain.parse(Array("\0u\0".utf8)) == nil)
        #expect(SASLPlain.parse(Array("\0u\0p\0q".utf8)) == nil)
        #expect(SASLPlain.parse(Array("up".utf8)) == nil)
        #expect(SASLPlain.parse(SASLPlain.encode(user: "u", password: "p"))?.password == Array("p".utf8))
    }
}
