// CShim for SHUT_WR: under -sanitize=address Clang's module map gives <sys/socket.h> to
// CShim (whose header includes it first), and Glibc alone no longer shows the constant.
import CShim
import Glibc
import Reactor
import Testing

/// One server and one client session over a nonblocking socketpair.
private final class Pair {
    let certs: TLSFixture.Certificates
    let serverFD: Int32
    let clientFD: Int32
    let server: TLSStream
    let client: TLSStream

    init(
        serverMin: TLSVersion = .tls1_2, clientMax: TLSVersion? = nil, alpn: [String] = [],
        serverName: String? = nil, twoCertificates: Bool = false
    ) throws {
        certs = try TLSFixture.certificates(withSecond: twoCertificates)
        var list = [(certPath: certs.cert("mail"), keyPath: certs.key("mail"))]
        if twoCertificates { list.append((certPath: certs.cert("net"), keyPath: certs.key("net"))) }
        let serverContext = try TLSServerContext(certificates: list, minVersion: serverMin)
        let clientMin: TLSVersion = (clientMax ?? .tls1_3) < .tls1_2 ? .tls1_1 : .tls1_2
        let clientContext = try TLSClientContext(minVersion: clientMin, maxVersion: clientMax, alpn: alpn)
        (serverFD, clientFD) = try TLSFixture.socketPair()
        server = try TLSStream(server: serverContext, fd: serverFD)
        client = try TLSStream(client: clientContext, fd: clientFD, serverName: serverName)
    }

    deinit {
        close(serverFD)
        close(clientFD)
        certs.remove()
    }
}

@Suite("TLSStream")
struct TLSStreamTests {
    @Test func handshakeThenDataBothWays() throws {
        let pair = try Pair()
        #expect(pair.server.isHandshakeComplete == false)
        #expect(TLSFixture.handshake(pair.server, pair.client) == nil)
        #expect(pair.server.isHandshakeComplete)
        #expect(pair.server.protocolVersion == "TLSv1.3")
        #expect(pair.client.protocolVersion == "TLSv1.3")
        #expect(pair.server.cipher != nil)
        #expect(pair.server.cipher == pair.client.cipher)

        let greeting = Array("+OK POP3 ready\r\n".utf8)
        #expect(TLSFixture.transfer(greeting, from: pair.server, to: pair.client) == greeting)
        let command = Array("CAPA\r\n".utf8)
        #expect(TLSFixture.transfer(command, from: pair.client, to: pair.server) == command)
    }

    @Test func readBeforeDataIsWantRead() throws {
        let pair = try Pair()
        #expect(TLSFixture.handshake(pair.server, pair.client) == nil)
        var buffer = [UInt8](repeating: 0, count: 64)
        // TLS 1.3 session tickets arrive after the handshake; reading them is
        // internal and must still end in wantRead, never in bytes or an error.
        #expect(buffer.withUnsafeMutableBytes { pair.client.read(into: $0) } == .wantRead)
        #expect(buffer.withUnsafeMutableBytes { pair.server.read(into: $0) } == .wantRead)
    }

    @Test func largeWriteMakesPartialProgressFromAMovingBuffer() throws {
        let pair = try Pair()
        #expect(TLSFixture.handshake(pair.server, pair.client) == nil)
        let total = 4 * 1024 * 1024
        let payload = (0..<total).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
        var sent = 0
        var received: [UInt8] = []
        received.reserveCapacity(total)
        var sawPartial = false
        var sawWantWrite = false
        var readBuffer = [UInt8](repeating: 0, count: 16 * 1024)
        var rounds = 0
        while received.count < total && rounds < 1_000_000 {
            rounds += 1
            if sent < total {
                // A fresh copy each time: the retry after wantWrite comes from a
                // different address, as the reactor's output queue may compact.
                let rest = Array(payload[sent...])
                switch rest.withUnsafeBytes({ pair.server.write($0) }) {
                case .bytes(let n):
                    if n < rest.count { sawPartial = true }
                    sent += n
                case .wantWrite: sawWantWrite = true
                case let other: Issue.record("write: \(other)"); return
                }
            }
            // Read only every other round so the socket really fills up.
            if rounds % 2 == 0 || sent == total {
                switch readBuffer.withUnsafeMutableBytes({ pair.client.read(into: $0) }) {
                case .bytes(let n): received += readBuffer[0..<n]
                case .wantRead: break
                case let other: Issue.record("read: \(other)"); return
                }
            }
        }
        #expect(sawPartial)
        #expect(sawWantWrite)
        #expect(received.count == total)
        #expect(received == payload)
    }

    @Test func closeNotifyIsClosed() throws {
        let pair = try Pair()
        #expect(TLSFixture.handshake(pair.server, pair.client) == nil)
        #expect(pair.client.shutdown() == .done)
        var buffer = [UInt8](repeating: 0, count: 64)
        var result = TLSIO.wantRead
        for _ in 0..<10 {
            result = buffer.withUnsafeMutableBytes { pair.server.read(into: $0) }
            if result != .wantRead { break }
        }
        #expect(result == .closed)
    }

    @Test func socketEOFWithoutCloseNotifyIsClosed() throws {
        let pair = try Pair()
        #expect(TLSFixture.handshake(pair.server, pair.client) == nil)
        _ = shutdown(pair.clientFD, Int32(SHUT_WR))
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(buffer.withUnsafeMutableBytes { pair.server.read(into: $0) } == .closed)
    }

    @Test func peerHangingUpInHandshakeFailsIt() throws {
        let pair = try Pair()
        #expect(pair.client.handshake() == .wantRead)
        Glibc.shutdown(pair.clientFD, Int32(SHUT_RDWR))
        var result = TLSResult.wantRead
        for _ in 0..<10 {
            result = pair.server.handshake()
            if result != .wantRead && result != .wantWrite { break }
        }
        guard case .failed(let why) = result else {
            Issue.record("expected failure, got \(result)")
            return
        }
        #expect(!why.isEmpty)
    }

    @Test func plaintextOnTheTLSPortFailsTheHandshakeWithAReason() throws {
        let pair = try Pair()
        let garbage = Array("USER alice\r\nPASS secret\r\n".utf8)
        #expect(garbage.withUnsafeBytes { Glibc.write(pair.clientFD, $0.baseAddress, $0.count) } == garbage.count)
        guard case .failed(let why) = pair.server.handshake() else {
            Issue.record("plaintext was not refused")
            return
        }
        #expect(why.contains("TLS handshake failed"))
        // After a fatal error the stream stays failed and shutdown is a no-op.
        #expect(pair.server.shutdown() == .done)
        var buffer = [UInt8](repeating: 0, count: 16)
        guard case .failed = buffer.withUnsafeMutableBytes({ pair.server.read(into: $0) }) else {
            Issue.record("read after failure did not fail")
            return
        }
    }

    @Test func pendingBytesCountsDecryptedDataEpollCannotSee() throws {
        let pair = try Pair()
        #expect(TLSFixture.handshake(pair.server, pair.client) == nil)
        let first = Array("+OK first record\r\n".utf8)
        let second = Array("+OK second\r\n".utf8)
        #expect(first.withUnsafeBytes { pair.server.write($0) } == .bytes(first.count))
        #expect(second.withUnsafeBytes { pair.server.write($0) } == .bytes(second.count))
        #expect(pair.client.pendingBytes == 0)

        var small = [UInt8](repeating: 0, count: 4)
        #expect(small.withUnsafeMutableBytes { pair.client.read(into: $0) } == .bytes(4))
        #expect(pair.client.pendingBytes == first.count - 4)

        // Drain: everything of both records arrives, with no more epoll events needed
        // for the part already decrypted.
        var got = Array(small)
        var buffer = [UInt8](repeating: 0, count: 256)
        for _ in 0..<10 where got.count < first.count + second.count {
            if case .bytes(let n) = buffer.withUnsafeMutableBytes({ pair.client.read(into: $0) }) {
                got += buffer[0..<n]
            }
        }
        #expect(got == first + second)
        #expect(pair.client.pendingBytes == 0)
    }

    @Test func emptyBuffersDoNothing() throws {
        let pair = try Pair()
        #expect(TLSFixture.handshake(pair.server, pair.client) == nil)
        #expect(pair.server.write(UnsafeRawBufferPointer(start: nil, count: 0)) == .bytes(0))
        #expect(pair.server.read(into: UnsafeMutableRawBufferPointer(start: nil, count: 0)) == .bytes(0))
    }
}
