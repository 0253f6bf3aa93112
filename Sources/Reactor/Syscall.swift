import CShim
import Glibc

/// A failed system call: the errno value and the call's name (convention 1 of ARCHITECTURE.md).
public struct SyscallError: Error, Equatable, CustomStringConvertible, Sendable {
    public let errno: Int32
    public let call: String

    public init(errno: Int32, call: String) {
        self.errno = errno
        self.call = call
    }

    public var description: String {
        guard let message = strerror(errno) else { return "\(call): errno \(errno)" }
        return "\(call): \(String(cString: message)) (errno \(errno))"
    }
}

/// Result of a nonblocking call: EAGAIN is an expected value, not an error.
public enum IOResult<T>: Equatable where T: Equatable {
    case processed(T)
    case wouldBlock
}

/// The one wrapper family for syscalls (after swift-nio's System.swift):
/// EINTR is retried here and nowhere else, EAGAIN becomes `.wouldBlock`,
/// EBADF/EFAULT mean we passed a closed descriptor or a bad pointer (our bug),
/// everything else is thrown with the call's name.
@inline(__always)
func syscall<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws -> IOResult<T> {
    while true {
        let result = body()
        if result >= 0 { return .processed(result) }
        let err = Glibc.errno
        switch err {
        case EINTR:
            continue
        case EAGAIN, EWOULDBLOCK:
            return .wouldBlock
        case EBADF, EFAULT:
            preconditionFailure("\(name): errno \(err): descriptor or pointer misuse is a bug in pop3d")
        default:
            throw SyscallError(errno: err, call: "\(name)")
        }
    }
}

/// Like `syscall` for calls that never return EAGAIN in our use (setup calls).
@inline(__always)
@discardableResult
func syscallBlocking<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws -> T {
    switch try syscall(name, body) {
    case .processed(let value): return value
    case .wouldBlock: throw SyscallError(errno: EAGAIN, call: "\(name)")
    }
}

/// close(2) ignoring EINTR: on Linux the descriptor is released even when close is interrupted,
/// so retrying could close a descriptor another part of the process just received.
@inline(__always)
func closeDescriptor(_ fd: Int32) {
    _ = Glibc.close(fd)
}
