import CShim
import Glibc
@testable import Reactor
import Testing

/// A Connection with a server TLSTransport on one end of a socketpair; the client TLSStream
/// on the other end is stepped from the loop's polling closure, so nothing blocks.
private final class Setup {
    let certs: TLSFixture.Certificates
    let loop: EventLoop
    let serverFD: Int32
    let clientFD: Int32
    let context: TLSServerContext
    let client: TLSStream
    let recorder = Recorder()

    init() throws {
        certs = try TLSFixture.certificates()
        loop = try EventLoop()
        context = try TLSServerContext(certificates: [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))])
        (serverFD, clientFD) = try TLSFixture.socketPair()
        client = try TLSStream(client: try TLSClientContext(), fd: clientFD)
    }

    func connection(tls: Bool) throws -> (Connection, TLSTransport?) {
        let transport = tls ? try TLSTransport(server: context, fd: serverFD) : nil
        let connection = try Connection(fd: serverFD, peer: try loopback(), loop: loop,
                                        transport: transport ?? PlainTransport())
        connection.delegate = recorder
        return (connection, transport)
    }

    /// Steps the client: handshake, then reads whatever arrived into `into`.
    func stepClient(_ into: inout [UInt8]) {
        guard client.handshake() == .done else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case .bytes(let n) = buffer.withUnsafeMutableBytes({ client.read(into: $0) }), n > 0 {
            into += buffer[0..<n]
        }
    }

    func clientWrite(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBytes { client.write($0) } == .bytes(text.utf8.count)
    }

    deinit {
        close(clientFD)
        certs.remove()
    }
}

@Suite("TLSTransport")
struct TLSTransportTests {
    /// Implicit TLS: the greeting queued at accept waits for the handshake, is never sent in
    /// plaintext, and the waiting does not spin on EPOLLOUT (regression: a TLS write that
    /// needs input used to arm EPOLLOUT on an always-writable socket).
    @Test func greetingWaitsForHandshakeWithoutSpinning() throws {
        let s = try Setup()
        let (connection, transport) = try s.connection(tls: true)
        connection.write("+OK ready\r\n")
        let cpuBefore = threadCPUNanoseconds()
        let idleUntil = cshim_monotonic_ns() + 300_000_000
        try runLoop(s.loop, timeoutSeconds: 5) { cshim_monotonic_ns() >= idleUntil }
        let cpu = threadCPUNanoseconds() - cpuBefore
        #expect(cpu < 150_000_000, "loop burnt \(cpu / 1_000_000) ms of 300 ms waiting for a ClientHello")
        var byte: UInt8 = 0
        #expect(recv(s.clientFD, &byte, 1, Int32(MSG_DONTWAIT)) == -1)  // nothing left in plaintext
        #expect(transport?.isHandshakeComplete == false)

        var got: [UInt8] = []
        let done = try runLoop(s.loop) { s.stepClient(&got); return got.count >= 11 }
        #expect(done)
        #expect(got == Array("+OK ready\r\n".utf8))
        #expect(transport?.isHandshakeComplete == true)

        #expect(s.clientWrite("CAPA\r\nNOOP\r\n"))
        #expect(try runLoop(s.loop) { s.recorder.received.count >= 12 })
        #expect(s.recorder.received == Array("CAPA\r\nNOOP\r\n".utf8))

        // close_notify from the client is an orderly end of stream.
        s.client.shutdown()
        #expect(try runLoop(s.loop) { s.recorder.closedReason != nil })
        #expect(s.recorder.closedReason == .peerClosed)
    }

    @Test func handshakeCompletionIsReported() throws {
        let s = try Setup()
        let (_, transport) = try s.connection(tls: true)
        var completed: String?
        transport?.onHandshakeComplete = { completed = $0.protocolVersion }
        var got: [UInt8] = []
        #expect(try runLoop(s.loop) { s.stepClient(&got); return completed != nil })
        #expect(completed == "TLSv1.3")
    }

    @Test func plaintextOnTLSConnectionFailsWithReason() throws {
        let s = try Setup()
        let (connection, transport) = try s.connection(tls: true)
        connection.write("+OK ready\r\n")
        let line = Array("USER alice\r\n".utf8)
        #expect(line.withUnsafeBytes { write(s.clientFD, $0.baseAddress, $0.count) } == line.count)
        #expect(try runLoop(s.loop) { s.recorder.closedReason != nil })
        if case .error = s.recorder.closedReason {} else {
            Issue.record("expected .error, got \(String(describing: s.recorder.closedReason))")
        }
        #expect(transport?.failureReason?.hasPrefix("handshake:") == true)
        #expect(s.recorder.received.isEmpty)
    }

    /// STLS: the "+OK" leaves in plaintext, the bytes pipelined after STLS are dropped, and
    /// what follows the handshake arrives decrypted (RFC 2595 §4, CVE-2011-0411).
    @Test func switchTransportDropsInjectedPlaintext() throws {
        let s = try Setup()
        let (connection, _) = try s.connection(tls: false)
        s.recorder.consume = false
        var switched = false
        var afterSwitch: [UInt8] = []
        s.recorder.onReadable = { c in
            if switched {
                c.withInput { afterSwitch += $0; return $0.count }
                return
            }
            c.takeLine()
            c.write("+OK begin TLS\r\n")
            if let tls = try? TLSTransport(server: s.context, fd: c.fd) { c.switchTransport(to: tls) }
            switched = true
        }
        let injected = Array("STLS\r\nCAPA\r\n".utf8)
        #expect(injected.withUnsafeBytes { write(s.clientFD, $0.baseAddress, $0.count) } == injected.count)
        var plain: [UInt8] = []
        #expect(try runLoop(s.loop) {
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = buffer.withUnsafeMutableBytes { recv(s.clientFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { plain += buffer[0..<n] }
            return plain.count >= 15
        })
        #expect(plain == Array("+OK begin TLS\r\n".utf8))
        var got: [UInt8] = []
        #expect(try runLoop(s.loop) { s.stepClient(&got); return s.client.isHandshakeComplete })
        #expect(s.clientWrite("NOOP\r\n"))
        #expect(try runLoop(s.loop) { s.stepClient(&got); return afterSwitch.count >= 6 })
        #expect(afterSwitch == Array("NOOP\r\n".utf8))
        #expect(got.isEmpty)
        #expect(!connection.isClosed)
        connection.close(flushFirst: false)  // the recorder drops its hook, which holds `s`
    }
}
