import CShim
import Glibc
import SystemCalls

/// What a preamble parser says about the bytes received so far (`Connection.expectPreamble`).
public enum PreambleStep: Equatable, Sendable {
    /// Every byte so far belongs to the preamble and it is not complete: read more.
    case needMore
    /// The preamble is the first `consumed` bytes; the rest belongs to the transport.
    case complete(consumed: Int)
    /// Not a valid preamble: the connection is closed (reason `.local`), nothing sent.
    case invalid
}

/// The preamble stage of a connection: bytes a peer sends before the application protocol
/// and before the transport (a PROXY protocol header, HAProxy's proxy-protocol.txt, which
/// precedes even a TLS ClientHello on an implicit-TLS port).
///
/// Why in the Reactor and why generic: only the Reactor reads the socket, and the preamble
/// must be read around the transport (a TLS transport would feed the header to OpenSSL). The
/// Reactor knows nothing of the PROXY protocol: the owner supplies the parser as a closure
/// (pop3d: `ProxyHeaderParser`, POP3Service+Proxy.swift).
///
/// How: the stage peeks (`recv(MSG_PEEK)`) up to `maxBytes`, shows the parser the bytes kept
/// so far plus the peeked ones, and then takes from the kernel only what the parser claims:
/// all the peeked bytes on `.needMore` (they are all preamble, so a byte-by-byte sender makes
/// progress and level-triggered epoll does not spin on peeked data), exactly the preamble's
/// tail on `.complete`. Whatever follows the preamble (the first command, the ClientHello)
/// stays in the kernel for the transport's first read. Nothing is written meanwhile.
///
/// Cost: a connection without a preamble pays one nil check per event; a preamble costs two
/// syscalls per read (peek, then the read that consumes) and one small buffer (`maxBytes`)
/// only while a split preamble is pending.
final class PreambleState {
    let maxBytes: Int
    let scan: (UnsafeRawBufferPointer) -> PreambleStep
    /// Preamble bytes already taken from the kernel (a preamble split across segments).
    var received: [UInt8] = []

    init(maxBytes: Int, scan: @escaping (UnsafeRawBufferPointer) -> PreambleStep) {
        self.maxBytes = maxBytes
        self.scan = scan
    }
}

extension Connection {
    /// Before any transport read, the peer must send a preamble of at most `maxBytes` bytes
    /// that `scan` recognises (see `PreambleStep`); once it is complete the delegate's
    /// `connectionPreambleEnded` runs and the transport reads what follows. Call right after
    /// `init`, before returning to the loop. The owner bounds the time (a timer that closes).
    public func expectPreamble(maxBytes: Int, scan: @escaping (UnsafeRawBufferPointer) -> PreambleStep) {
        preamble = PreambleState(maxBytes: max(1, min(maxBytes, loop.scratch.count)), scan: scan)
    }

    /// The preamble stage is still running.
    public var isAwaitingPreamble: Bool { preamble != nil }

    /// An epoll event while the preamble is awaited.
    func handlePreambleEvent(_ events: UInt32) {
        if events & Epoll.error != 0 {
            finalize(.reset)
            return
        }
        if events & (Epoll.input | Epoll.readHangUp | Epoll.hangUp) != 0 { readPreamble() }
    }

    /// One peek, the parser's verdict, then the consuming read of what it claimed.
    func readPreamble() {
        guard let stage = preamble, case .open = state else { return }
        let kept = stage.received.count
        let room = stage.maxBytes - kept
        guard room > 0 else {
            abandonPreamble(.local)
            return
        }
        let scratch = loop.scratch
        guard let base = scratch.baseAddress else { return }
        stage.received.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: scratch[0..<kept]).copyMemory(from: $0) }
        let peeked: Int
        do {
            switch try syscall("recv", { Glibc.recv(fd, base + kept, room, Int32(MSG_PEEK)) }) {
            case .wouldBlock: return
            case .processed(0):
                abandonPreamble(.peerClosed)
                return
            case .processed(let n): peeked = n
            }
        } catch {
            abandonPreamble(error.errno == ECONNRESET ? .reset : .error(error))
            return
        }
        let step = stage.scan(UnsafeRawBufferPointer(rebasing: scratch[0..<kept + peeked]))
        let take: Int
        switch step {
        case .invalid:
            abandonPreamble(.local)
            return
        case .needMore:
            take = peeked
        case .complete(let consumed):
            guard consumed >= kept, consumed <= kept + peeked else {
                abandonPreamble(.local)
                return
            }
            take = consumed - kept
        }
        // Take from the kernel exactly the bytes the parser claimed (they are still there:
        // only this thread reads the socket).
        if take > 0 {
            let got: Int
            do {
                switch try syscall("read", { Glibc.read(fd, base + kept, take) }) {
                case .wouldBlock: got = 0
                case .processed(let n): got = n
                }
            } catch {
                abandonPreamble(error.errno == ECONNRESET ? .reset : .error(error))
                return
            }
            guard got == take else {
                abandonPreamble(.error(SyscallError(errno: EPROTO, call: "read")))
                return
            }
        }
        switch step {
        case .needMore:
            stage.received.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[kept..<kept + take]))
            if stage.received.count >= stage.maxBytes { abandonPreamble(.local) }
        case .complete:
            preamble = nil
            delegate?.connectionPreambleEnded(self)
            // What follows is read by the transport at the next readiness report
            // (level-triggered epoll reports bytes still in the kernel).
        case .invalid:
            break
        }
    }

    private func abandonPreamble(_ reason: CloseReason) {
        preamble = nil
        finalize(reason)
    }
}
