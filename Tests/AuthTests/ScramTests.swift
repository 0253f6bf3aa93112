import ByteCodec
import Digests
import Testing
@testable import Auth

/// A minimal SCRAM-SHA-256 client (RFC 5802 §3) to drive the server.
struct TestScramClient {
    var user: String
    var password: [UInt8]
    var clientNonce = "fyko+d2lbbFgONRv9qkxdawL"
    var gs2 = "n,,"

    var clientFirstBare: String { "n=\(user),r=\(clientNonce)" }
    var clientFirst: [UInt8] { Array((gs2 + clientFirstBare).utf8) }

    /// Returns (client-final, expected server-final) for a server-first.
    func final(serverFirst: [UInt8]) -> ([UInt8], [UInt8])? {
        let sf = String(decoding: serverFirst, as: UTF8.self)
        var attrs: [Character: String] = [:]
        for a in sf.split(separator: ",") { if let k = a.first { attrs[k] = String(a.dropFirst(2)) } }
        guard let nonce = attrs["r"], let saltText = attrs["s"], let salt = Base64.decode(saltText),
              let iter = attrs["i"].flatMap({ Int($0) }) else { return nil }
        let salted = Crypto.pbkdf2(.sha256, password: password, salt: salt, iterations: iter, length: 32)
        let clientKey = Digest.sha256.hmac(key: salted, data: Array("Client Key".utf8))
        let storedKey = Digest.sha256.hash(clientKey)
        let withoutProof = "c=\(Base64.encodedString(Array(gs2.utf8))),r=\(nonce)"
        let authMessage = Array("\(clientFirstBare),\(sf),\(withoutProof)".utf8)
        let signature = Digest.sha256.hmac(key: storedKey, data: authMessage)
        let proof = zip(clientKey, signature).map { $0 ^ $1 }
        let serverKey = Digest.sha256.hmac(key: salted, data: Array("Server Key".utf8))
        let serverSig = Digest.sha256.hmac(key: serverKey, data: authMessage)
        return (Array("\(withoutProof),p=\(Base64.encodedString(proof))".utf8),
                Array("v=\(Base64.encodedString(serverSig))".utf8))
    }
}

@Suite struct ScramTests {
    /// RFC 7677 §3, user "user", password "pencil".
    @Test func vectorFromRFC7677() throws {
        let salt = try #require(Base64.decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
        let keys = ScramKeys(password: Array("pencil".utf8), salt: salt, iterations: 4096)
        let secret = ScramSecret(iterations: 4096, salt: salt, storedKey: keys.storedKey, serverKey: keys.serverKey).text
        let entry = UserEntry(user: "user", scheme: .scramSHA256, secret: Array(secret.utf8))
        // The stored form also verifies as a cleartext check (USER/PASS).
        #expect(verify(password: Array("pencil".utf8), entry: entry))
        #expect(!verify(password: Array("pencil2".utf8), entry: entry))

        var server = ScramServer(serverNonce: Array("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".utf8))
        let first = server.receiveClientFirst(Array("n,,n=user,r=rOprNGfwEbeRWgbNEkqO".utf8)) { $0 == "user" ? entry : nil }
        #expect(try first.get() == Array("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".utf8))
        #expect(server.username == "user")
        let final = try server.receiveClientFinal(Array("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".utf8)).get()
        #expect(final.verified)
        #expect(final.entry?.user == "user")
        #expect(final.serverFinal == Array("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".utf8))
        // A flipped proof bit fails with the RFC 5802 error.
        let bad = try server.receiveClientFinal(Array("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=".utf8)).get()
        #expect(!bad.verified && bad.entry == nil)
        #expect(bad.serverFinal == Array("e=invalid-proof".utf8))
    }

    @Test func plainUserIsDerivedWithPBKDF2() throws {
        let entry = UserEntry(user: "al,ice", scheme: .plain, secret: Array("pencil".utf8))
        for (password, expected) in [("pencil", true), ("pencil!", false)] {
            let client = TestScramClient(user: "al=2Cice", password: Array(password.utf8))
            var server = ScramServer()
            let sf = try server.receiveClientFirst(client.clientFirst) { $0 == "al,ice" ? entry : nil }.get()
            #expect(String(decoding: sf, as: UTF8.self).hasSuffix(",i=4096"))
            let (cf, serverFinal) = try #require(client.final(serverFirst: sf))
            let result = try server.receiveClientFinal(cf).get()
            #expect(result.verified == expected)
            if expected { #expect(result.serverFinal == serverFinal) }
        }
    }

    @Test func unknownUserGetsAStableDecoyIndistinguishableInShape() throws {
        func serverFirst(_ user: String, nonce: String = "abc") throws -> (String, ScramServer) {
            var s = ScramServer(serverNonce: Array("XYZ".utf8))
            let sf = try s.receiveClientFirst(Array("n,,n=\(user),r=\(nonce)".utf8)) { _ in nil }.get()
            return (String(decoding: sf, as: UTF8.self), s)
        }
        let (a1, server) = try serverFirst("ghost")
        let (a2, _) = try serverFirst("ghost")
        let (b, _) = try serverFirst("phantom")
        #expect(a1 == a2)  // same salt every time, like a stored one
        #expect(a1 != b)
        #expect(a1.hasPrefix("r=abcXYZ,s=") && a1.hasSuffix(",i=4096"))
        let client = TestScramClient(user: "ghost", password: Array("x".utf8), clientNonce: "abc")
        let (cf, _) = try #require(client.final(serverFirst: Array(a1.utf8)))
        let result = try server.receiveClientFinal(cf).get()
        #expect(!result.verified)
        #expect(result.serverFinal == Array("e=invalid-proof".utf8))
    }

    @Test(arguments: [
        ("p=tls-unique,,n=user,r=abc", ScramServer.Failure.channelBindingNotSupported),
        ("n,,m=ext,n=user,r=abc", .unsupportedExtension),
        ("n,a=admin,n=user,r=abc", .authzidNotAllowed),
        ("n,,n=us=3Xer,r=abc", .malformed),
        ("n,,n=user", .malformed),
        ("n,,r=abc,n=user", .malformed),
        ("x,,n=user,r=abc", .malformed),
        ("n,,n=user,r=a,b", .malformed),
        ("", .malformed),
    ])
    func badClientFirstIsAFailureValue(message: String, failure: ScramServer.Failure) {
        var s = ScramServer()
        let r = s.receiveClientFirst(Array(message.utf8)) { _ in nil }
        #expect(r == .failure(failure))
    }

    @Test func clientFinalChecksBindingNonceAndOrder() throws {
        let entry = UserEntry(user: "user", scheme: .plain, secret: Array("pencil".utf8))
        var fresh = ScramServer()
        #expect(throws: ScramServer.Failure.outOfOrder) { try fresh.receiveClientFinal(Array("c=biws,r=x,p=AA==".utf8)).get() }
        let sf = try fresh.receiveClientFirst(Array("y,a=user,n=user,r=abc".utf8)) { _ in entry }.get()
        #expect(fresh.receiveClientFirst(Array("n,,n=user,r=abc".utf8)) { _ in entry } == .failure(.outOfOrder))
        let nonce = String(decoding: sf, as: UTF8.self).split(separator: ",")[0].dropFirst(2)
        #expect(throws: ScramServer.Failure.channelBindingNotSupported) {
            try fresh.receiveClientFinal(Array("c=biws,r=\(nonce),p=AA==".utf8)).get()
        }
        #expect(throws: ScramServer.Failure.nonceMismatch) {
            try fresh.receiveClientFinal(Array("c=eSxhPXVzZXIs,r=abcd,p=AA==".utf8)).get()
        }
        #expect(throws: ScramServer.Failure.malformed) { try fresh.receiveClientFinal(Array("garbage".utf8)).get() }
        #expect(throws: ScramServer.Failure.tooLong) {
            try fresh.receiveClientFinal([UInt8](repeating: 0x41, count: ScramServer.maxMessageLength + 1)).get()
        }
        var client = TestScramClient(user: "user", password: Array("pencil".utf8), clientNonce: "abc")
        client.gs2 = "y,a=user,"
        let (cf, _) = try #require(client.final(serverFirst: sf))
        #expect(try fresh.receiveClientFinal(cf).get().verified)
    }
}
