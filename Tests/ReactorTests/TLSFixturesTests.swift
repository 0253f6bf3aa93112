import CShim
import Glibc
import Reactor
import Testing
import TestSupport

/// Shared pieces of the TLS tests: throwaway certificates (`TestSupport.TestCertificate`),
/// nonblocking socketpairs, and a step-by-step handshake driver that alternates client and
/// server in one thread.
enum TLSFixture {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// A temporary folder with certificates; `remove()` deletes it.
    struct Certificates {
        let directory: String

        func cert(_ name: String) -> String { "\(directory)/\(name).crt" }
        func key(_ name: String) -> String { "\(directory)/\(name).key" }

        /// Writes `name.crt`/`name.key`: self-signed, given CN and SAN DNS names.
        func make(_ name: String, commonName: String, dnsNames: [String], rsa: Bool = false) throws {
            try TestCertificate.make(certPath: cert(name), keyPath: key(name), commonName: commonName,
                                     dnsNames: dnsNames, rsa: rsa)
        }

        func write(_ name: String, _ text: String) {
            let fd = open("\(directory)/\(name)", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            guard fd >= 0 else { return }
            _ = text.utf8CString.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
            close(fd)
        }

        func path(_ name: String) -> String { "\(directory)/\(name)" }

        func remove() { TempDirectory.removeTree(directory) }
    }

    /// A fresh temp folder holding `mail` (CN mail.example.org, EC) and, if asked,
    /// `net` (CN pop.example.net, SAN *.example.net, RSA).
    static func certificates(withSecond: Bool = false) throws -> Certificates {
        var template = Array("/tmp/pop3d-tls-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ buffer in
            buffer.baseAddress.flatMap { mkdtemp($0) }
        }) else {
            throw Failure("mkdtemp failed")
        }
        let certs = Certificates(directory: String(cString: made))
        do {
            try certs.make("mail", commonName: "mail.example.org", dnsNames: ["mail.example.org"])
            if withSecond {
                try certs.make(
                    "net", commonName: "pop.example.net",
                    dnsNames: ["pop.example.net", "*.example.net"], rsa: true)
            }
        } catch {
            certs.remove()
            throw error
        }
        return certs
    }

    /// A nonblocking AF_UNIX stream pair: (server end, client end).
    static func socketPair() throws -> (Int32, Int32) {
        // A write to a peer that closed must be an EPIPE value, not a signal.
        signal(SIGPIPE, SIG_IGN)
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0
        else { throw Failure("socketpair: errno \(errno)") }
        return (fds[0], fds[1])
    }

    /// Steps both handshakes alternately until both are done or one fails.
    /// Returns nil on success, else the failure messages seen.
    static func handshake(_ server: TLSStream, _ client: TLSStream, maxSteps: Int = 100) -> String? {
        var serverDone = false
        var clientDone = false
        for _ in 0..<maxSteps {
            if !clientDone {
                switch client.handshake() {
                case .done: clientDone = true
                case .failed(let why): return "client: \(why)"
                case .wantRead, .wantWrite: break
                }
            }
            if !serverDone {
                switch server.handshake() {
                case .done: serverDone = true
                case .failed(let why): return "server: \(why)"
                case .wantRead, .wantWrite: break
                }
            }
            if serverDone && clientDone { return nil }
        }
        return "handshake did not finish in \(maxSteps) steps"
    }

    /// Writes all of `bytes` from `writer`, reading on `reader` whenever the
    /// socket is full; returns everything `reader` received once it has `bytes.count`.
    static func transfer(_ bytes: [UInt8], from writer: TLSStream, to reader: TLSStream) -> [UInt8]? {
        var received: [UInt8] = []
        var sent = 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<100_000 {
            if sent < bytes.count {
                let result = bytes.withUnsafeBytes { writer.write(UnsafeRawBufferPointer(rebasing: $0[sent...])) }
                switch result {
                case .bytes(let n): sent += n
                case .wantRead, .wantWrite: break
                case .closed, .failed: return nil
                }
            }
            let got = buffer.withUnsafeMutableBytes { reader.read(into: $0) }
            switch got {
            case .bytes(let n): received += buffer[0..<n]
            case .wantRead, .wantWrite: break
            case .closed, .failed: return nil
            }
            if received.count >= bytes.count { return received }
        }
        return nil
    }
}
