import Glibc
import Reactor
import Testing

/// Rough full-handshake rate, client and server in one thread (so one core does
/// both sides' work). Off by default; run with
/// `POP3D_TLS_BENCH=1 swift test -c release --filter TLSHandshakeRate`.
@Suite("TLS handshake rate", .enabled(if: getenv("POP3D_TLS_BENCH") != nil))
struct TLSHandshakeRateTests {
    /// Handshakes per measured run.
    static let handshakes = 2000

    @Test(arguments: ["mail", "net"])
    func fullHandshakesPerSecond(certificate: String) throws {
        let certs = try TLSFixture.certificates(withSecond: true)
        defer { certs.remove() }
        let server = try TLSServerContext(certificates: [
            (certPath: certs.cert(certificate), keyPath: certs.key(certificate))
        ])
        let client = try TLSClientContext()
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        for _ in 0..<Self.handshakes {
            let (serverFD, clientFD) = try TLSFixture.socketPair()
            defer {
                close(serverFD)
                close(clientFD)
            }
            let serverStream = try TLSStream(server: server, fd: serverFD)
            let clientStream = try TLSStream(client: client, fd: clientFD)
            try #require(TLSFixture.handshake(serverStream, clientStream) == nil)
        }
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        let seconds = Double(end.tv_sec - start.tv_sec) + Double(end.tv_nsec - start.tv_nsec) / 1e9
        let rate = Double(Self.handshakes) / seconds
        print("TLS 1.3 full handshakes (\(certificate == "mail" ? "ECDSA P-256" : "RSA 2048")): \(Int(rate))/s, client+server on one thread")
        #expect(rate > 0)
    }
}
