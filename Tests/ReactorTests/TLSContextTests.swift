import Glibc
import Reactor
import Testing

/// Runs one handshake between fresh sessions of the two contexts; returns the
/// client stream, the server stream and the failure message (nil on success).
private func connect(
    _ server: TLSServerContext, _ client: TLSClientContext, serverName: String? = nil
) throws -> (client: TLSStream, server: TLSStream, failure: String?) {
    let (serverFD, clientFD) = try TLSFixture.socketPair()
    defer {
        close(serverFD)
        close(clientFD)
    }
    let serverStream = try TLSStream(server: server, fd: serverFD)
    let clientStream = try TLSStream(client: client, fd: clientFD, serverName: serverName)
    let failure = TLSFixture.handshake(serverStream, clientStream)
    return (clientStream, serverStream, failure)
}

@Suite("TLS contexts")
struct TLSContextTests {
    @Test func sniPicksTheCertificateThatNamesTheHost() throws {
        let certs = try TLSFixture.certificates(withSecond: true)
        defer { certs.remove() }
        let server = try TLSServerContext(certificates: [
            (certPath: certs.cert("mail"), keyPath: certs.key("mail")),
            (certPath: certs.cert("net"), keyPath: certs.key("net")),
        ])
        let client = try TLSClientContext()
        let cases: [(String?, String)] = [
            ("pop.example.net", "pop.example.net"),
            ("other.example.net", "pop.example.net"),  // SAN wildcard
            ("mail.example.org", "mail.example.org"),
            ("unknown.example.com", "mail.example.org"),  // no match: the first
            ("a.b.example.net", "mail.example.org"),  // a wildcard covers one label only
            (nil, "mail.example.org"),  // no SNI: the first
        ]
        for (name, expectedCN) in cases {
            let result = try connect(server, client, serverName: name)
            #expect(result.failure == nil, "\(name ?? "no SNI")")
            #expect(result.client.peerCommonName == expectedCN, "\(name ?? "no SNI")")
            #expect(result.server.serverName == name, "\(name ?? "no SNI")")
        }
    }

    @Test func alpnPOP3WhenOfferedAndNothingOtherwise() throws {
        let certs = try TLSFixture.certificates()
        defer { certs.remove() }
        let server = try TLSServerContext(certificates: [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))])

        let offering = try connect(server, TLSClientContext(alpn: ["imap", "pop3"]))
        #expect(offering.failure == nil)
        #expect(offering.server.negotiatedALPN == "pop3")
        #expect(offering.client.negotiatedALPN == "pop3")

        let other = try connect(server, TLSClientContext(alpn: ["h2"]))
        #expect(other.failure == nil)
        #expect(other.server.negotiatedALPN == nil)
        #expect(other.client.negotiatedALPN == nil)

        let none = try connect(server, TLSClientContext())
        #expect(none.failure == nil)
        #expect(none.server.negotiatedALPN == nil)
    }

    @Test func minimumVersionRefusesOlderClients() throws {
        let certs = try TLSFixture.certificates()
        defer { certs.remove() }
        let pair = [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))]
        let tls12Server = try TLSServerContext(certificates: pair, minVersion: .tls1_2)
        let tls13Server = try TLSServerContext(certificates: pair, minVersion: .tls1_3)
        let tls12Client = try TLSClientContext(maxVersion: .tls1_2)
        let tls11Client = try TLSClientContext(minVersion: .tls1_1, maxVersion: .tls1_1)

        let accepted = try connect(tls12Server, tls12Client)
        #expect(accepted.failure == nil)
        #expect(accepted.server.protocolVersion == "TLSv1.2")

        let refused13 = try connect(tls13Server, tls12Client)
        #expect(refused13.failure != nil)
        #expect(!refused13.server.isHandshakeComplete)

        let refused11 = try connect(tls12Server, tls11Client)
        #expect(refused11.failure != nil)
        #expect(!refused11.server.isHandshakeComplete)

        #expect(throws: TLSError.self) {
            try TLSServerContext(certificates: pair, minVersion: .tls1_1)
        }
    }

    @Test func brokenCertificateOrKeyIsAnErrorWithAReason() throws {
        let certs = try TLSFixture.certificates(withSecond: true)
        defer { certs.remove() }
        certs.write("garbage.pem", "not a certificate\n")

        func message(_ cert: String, _ key: String) -> String? {
            do {
                _ = try TLSServerContext(certificates: [(certPath: cert, keyPath: key)])
                return nil
            } catch {
                return error.message
            }
        }
        let garbageCert = message(certs.path("garbage.pem"), certs.key("mail"))
        #expect(garbageCert?.contains("garbage.pem") == true)
        #expect(garbageCert?.contains("no start line") == true)

        let garbageKey = message(certs.cert("mail"), certs.path("garbage.pem"))
        #expect(garbageKey?.contains("private key") == true)

        let missing = message(certs.path("missing.crt"), certs.key("mail"))
        #expect(missing?.contains("missing.crt") == true)

        let mismatch = message(certs.cert("mail"), certs.key("net"))
        #expect(mismatch?.contains("does not match") == true)

        #expect(throws: TLSError("no TLS certificate configured")) {
            try TLSServerContext(certificates: [])
        }
    }

    @Test func verifyingClientChecksChainAndHostName() throws {
        let certs = try TLSFixture.certificates()
        defer { certs.remove() }
        let server = try TLSServerContext(certificates: [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))])
        let client = try TLSClientContext(verifyPeer: true, caFile: certs.cert("mail"))
        #expect(try connect(server, client, serverName: "mail.example.org").failure == nil)
        let wrongHost = try connect(server, client, serverName: "evil.example.org").failure
        #expect(wrongHost?.contains("certificate verify failed") == true)
    }

    @Test func sessionsOutliveTheirContextAcrossAReload() throws {
        let certs = try TLSFixture.certificates(withSecond: true)
        defer { certs.remove() }
        let (serverFD, clientFD) = try TLSFixture.socketPair()
        defer {
            close(serverFD)
            close(clientFD)
        }
        var current: TLSServerContext? = try TLSServerContext(certificates: [
            (certPath: certs.cert("mail"), keyPath: certs.key("mail"))
        ])
        let old: TLSStream = try TLSStream(server: #require(current), fd: serverFD)
        // "SIGHUP": a broken file keeps the old context; a good one replaces it.
        #expect(throws: TLSError.self) {
            try TLSServerContext(certificates: [(certPath: certs.path("nothing"), keyPath: certs.key("net"))])
        }
        current = try TLSServerContext(certificates: [(certPath: certs.cert("net"), keyPath: certs.key("net"))])

        let client = try TLSStream(client: TLSClientContext(), fd: clientFD)
        #expect(TLSFixture.handshake(old, client) == nil)
        #expect(client.peerCommonName == "mail.example.org")

        let fresh = try connect(#require(current), TLSClientContext())
        #expect(fresh.client.peerCommonName == "pop.example.net")
    }
}
