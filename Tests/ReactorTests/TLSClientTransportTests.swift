import Glibc
@testable import Reactor
import Testing

/// Both ends are Connections on one loop (a socketpair), the client end with a client
/// TLSTransport: nothing is stepped by hand, so the client's handshake must start by itself
/// (the server is silent until the ClientHello arrives, and epoll reports nothing before).
private final class Ends {
    let certs: TLSFixture.Certificates
    let loop: EventLoop
    let serverFD: Int32
    let clientFD: Int32
    let serverContext: TLSServerContext
    let clientContext: TLSClientContext
    let server = Recorder()
    let client = Recorder()

    init() throws {
        certs = try TLSFixture.certificates()
        loop = try EventLoop()
        serverContext = try TLSServerContext(certificates: [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))])
        clientContext = try TLSClientContext(alpn: ["pop3"])
        (serverFD, clientFD) = try TLSFixture.socketPair()
    }

    func connection(fd: Int32, transport: Transport, delegate: Recorder) throws -> Connection {
        let connection = try Connection(fd: fd, peer: try loopback(), loop: loop, transport: transport)
        connection.delegate = delegate
        return connection
    }

    deinit {
        certs.remove()
    }
}

@Suite("TLSTransport, client side")
struct TLSClientTransportTests {
    /// Implicit TLS: a client transport given at creation sends its ClientHello unprompted, then
    /// the greeting the server queued arrives decrypted, and ALPN "pop3" is agreed.
    @Test func implicitClientStartsHandshakeByItself() throws {
        let e = try Ends()
        let serverTransport = try TLSTransport(server: e.serverContext, fd: e.serverFD)
        let server = try e.connection(fd: e.serverFD, transport: serverTransport, delegate: e.server)
        server.write("+OK ready\r\n")
        let clientTransport = try TLSTransport(client: e.clientContext, fd: e.clientFD)
        #expect(clientTransport.speaksFirst)
        #expect(!serverTransport.speaksFirst)
        var completed = false
        clientTransport.onHandshakeComplete = { _ in completed = true }
        let client = try e.connection(fd: e.clientFD, transport: clientTransport, delegate: e.client)

        #expect(try runLoop(e.loop, timeoutSeconds: 5) { e.client.received.count >= 11 })
        #expect(e.client.received == Array("+OK ready\r\n".utf8))
        #expect(completed)
        #expect(!clientTransport.speaksFirst)
        #expect(clientTransport.stream.negotiatedALPN == "pop3")

        client.write("QUIT\r\n")
        #expect(try runLoop(e.loop, timeoutSeconds: 5) { e.server.received.count >= 6 })
        #expect(e.server.received == Array("QUIT\r\n".utf8))
        client.close(flushFirst: true)
        #expect(try runLoop(e.loop, timeoutSeconds: 5) { e.server.closedReason != nil })
        #expect(e.server.closedReason == .peerClosed)  // close_notify
    }

    /// STLS from the client's side: after the plaintext "+OK" the client switches, and the
    /// switch alone starts the handshake; what follows is protected both ways.
    @Test func switchOnClientStartsHandshake() throws {
        let e = try Ends()
        let server = try e.connection(fd: e.serverFD, transport: PlainTransport(), delegate: e.server)
        let client = try e.connection(fd: e.clientFD, transport: PlainTransport(), delegate: e.client)
        var serverTLS: TLSTransport?
        var clientTLS: TLSTransport?
        // The delegate callbacks cannot throw: a failure to build a transport is kept and
        // reported below, rather than surfacing only as a handshake that never completes.
        var setupErrors: [String] = []
        e.server.onReadable = { c in
            guard serverTLS == nil, e.server.received == Array("STLS\r\n".utf8) else { return }
            c.write("+OK begin TLS\r\n")
            do {
                let transport = try TLSTransport(server: e.serverContext, fd: c.fd)
                serverTLS = transport
                c.switchTransport(to: transport)
            } catch {
                setupErrors.append("\(error)")
            }
        }
        e.client.onReadable = { c in
            guard clientTLS == nil, e.client.received == Array("+OK begin TLS\r\n".utf8) else { return }
            do {
                let transport = try TLSTransport(client: e.clientContext, fd: c.fd)
                clientTLS = transport
                c.switchTransport(to: transport)
            } catch {
                setupErrors.append("\(error)")
            }
        }
        client.write("STLS\r\n")
        #expect(try runLoop(e.loop, timeoutSeconds: 5) {
            !setupErrors.isEmpty || (clientTLS?.isHandshakeComplete == true && serverTLS?.isHandshakeComplete == true)
        })
        try #require(setupErrors.isEmpty, "building a TLS transport failed: \(setupErrors)")
        #expect(clientTLS?.isHandshakeComplete == true && serverTLS?.isHandshakeComplete == true)
        client.write("NOOP\r\n")
        server.write("+OK\r\n")
        #expect(try runLoop(e.loop, timeoutSeconds: 5) {
            e.server.received.count >= 12 && e.client.received.count >= 20
        })
        #expect(e.server.received == Array("STLS\r\nNOOP\r\n".utf8))
        #expect(e.client.received == Array("+OK begin TLS\r\n+OK\r\n".utf8))
        #expect(!server.isClosed && !client.isClosed)
        client.close(flushFirst: false)
        server.close(flushFirst: false)
    }
}
