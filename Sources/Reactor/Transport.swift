import CShim
import Glibc
import SystemCalls

/// What a transport needs from epoll before it can make progress.
public struct Interest: OptionSet, Sendable {
    /// Bit set: 1 readable, 2 writable.
    public let rawValue: UInt8
    /// A set from its bits.
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Wait for EPOLLIN.
    public static let readable = Interest(rawValue: 1)
    /// Wait for EPOLLOUT.
    public static let writable = Interest(rawValue: 2)
}

/// Outcome of one transport read or write.
public enum TransportResult: Equatable, Sendable {
    /// Bytes moved (application bytes: plaintext for TLS). Never 0.
    case bytes(Int)
    /// No progress until the descriptor becomes ready for `needs`. A TLS read may need
    /// `.writable` (renegotiation/handshake output, SSL_ERROR_WANT_WRITE) and a TLS write
    /// `.readable` (SSL_ERROR_WANT_READ); the connection arms exactly that interest.
    case wouldBlock(needs: Interest)
    /// Orderly end of the stream (read returned 0, or TLS close_notify).
    case endOfStream
}

/// The seam between a Connection and the bytes on the wire.
///
/// The Connection owns the descriptor, the buffers, epoll interests, watermarks and timeouts;
/// a Transport only turns application bytes into wire bytes and back:
/// - `PlainTransport` calls read(2)/sendmsg(2).
/// - `TLSTransport` wraps an SSL* on the same fd. It performs its
///   handshake lazily inside read/write (SSL_accept state), reporting WANT_READ/WANT_WRITE as
///   `.wouldBlock(needs:)`. Plaintext already decrypted inside the library (SSL_pending, or a
///   whole TLS record read in one go) is announced through `hasBufferedInput`: the connection
///   then reads again without waiting for epoll, which would never report those bytes.
/// - STLS (RFC 2595 section 4): `Connection.switchTransport(to:)` installs the TLS transport
///   once the plaintext "+OK" has left the output queue; input received after the STLS line
///   is discarded so that no plaintext injected before the handshake is read as protected.
/// Errors thrown are `SyscallError` (ECONNRESET, EPIPE...) or transport-specific errors; the
/// connection closes with reason `.reset` or `.error`.
public protocol Transport: AnyObject {
    func read(fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> TransportResult
    func write(fd: Int32, _ chunks: UnsafeBufferPointer<iovec>) throws -> TransportResult
    /// Application bytes the transport holds that epoll cannot see.
    var hasBufferedInput: Bool { get }
    /// Called once before the connection closes fd (TLS: best-effort close_notify). Must not close fd.
    func willClose(fd: Int32)
    /// The transport must send before anything can arrive (a TLS client's ClientHello): the
    /// connection then calls `read` once as soon as the transport is installed, without waiting
    /// for epoll (which would wait forever, the server being silent until then).
    var speaksFirst: Bool { get }
    /// The next `read` may run a handshake step whose public-key work the loop budgets per
    /// turn (a server-side TLS handshake): the connection takes a step from
    /// `EventLoop.handshakeStepsPerTurn` first, or waits for a later turn.
    var handshakeStepPending: Bool { get }
    /// Why the transport failed, for its owner's log line, when a connection closed with
    /// `.error` (whose `SyscallError` carries only an errno): a TLS transport gives OpenSSL's
    /// reason. Nil when the transport has nothing to add (plain sockets).
    var failureReason: String? { get }
}

extension Transport {
    /// Default: false, the peer speaks first (plain sockets, a TLS server).
    public var speaksFirst: Bool { false }
    /// Default: false, no handshake work to budget.
    public var handshakeStepPending: Bool { false }
    /// Default: nil, nothing beyond the `SyscallError`.
    public var failureReason: String? { nil }
}

/// read(2) and sendmsg(2) (a writev with MSG_NOSIGNAL) on the socket.
public final class PlainTransport: Transport {
    /// A plain transport (it holds no state).
    public init() {}

    /// read(2) into `buffer`: 0 is `.endOfStream`, EAGAIN `.wouldBlock(needs: .readable)`.
    /// - Throws: `SyscallError` (ECONNRESET ...).
    public func read(fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws -> TransportResult {
        switch try syscall("read", { Glibc.read(fd, buffer.baseAddress, buffer.count) }) {
        case .wouldBlock: return .wouldBlock(needs: .readable)
        case .processed(0): return .endOfStream
        case .processed(let n): return .bytes(n)
        }
    }

    /// sendmsg(2) of `chunks` with MSG_NOSIGNAL: `.bytes(n)` (possibly fewer than offered), EAGAIN
    /// `.wouldBlock(needs: .writable)`.
    /// - Throws: `SyscallError` (EPIPE, ECONNRESET ...).
    public func write(fd: Int32, _ chunks: UnsafeBufferPointer<iovec>) throws -> TransportResult {
        // sendmsg is writev with flags: MSG_NOSIGNAL turns a write to a reset peer into EPIPE
        // instead of a process-killing SIGPIPE, without relying on a process-wide SIG_IGN.
        var message = msghdr()
        message.msg_iov = UnsafeMutablePointer(mutating: chunks.baseAddress)
        message.msg_iovlen = chunks.count
        switch try syscall("sendmsg", { Glibc.sendmsg(fd, &message, Int32(MSG_NOSIGNAL)) }) {
        case .wouldBlock: return .wouldBlock(needs: .writable)
        case .processed(let n): return n == 0 ? .wouldBlock(needs: .writable) : .bytes(n)
        }
    }

    /// Always false: the kernel's buffer is what epoll watches.
    public var hasBufferedInput: Bool { false }

    /// Nothing to do: plain sockets end with close(2) alone.
    public func willClose(fd: Int32) {}
}
