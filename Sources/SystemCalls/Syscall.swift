import Glibc

// The one wrapper family for system calls (after swift-nio's NIOPosix/System.swift), shared by
// Reactor, Maildrop and Auth. A module of its own because those modules may not import each
// other (ARCHITECTURE.md, module table) and CShim, being C, cannot hold Swift. Every call into
// the kernel that can fail with errno goes through `syscall` (or a function built on it):
//
// - EINTR is retried here and nowhere else (a signal landed on this thread; the call did
//   nothing and can be made again). The exceptions say why where they are: close(2), whose
//   descriptor is gone even when interrupted, and connect(2), which goes on asynchronously.
// - EAGAIN/EWOULDBLOCK is a value, `.wouldBlock`: on a nonblocking descriptor it is the normal
//   "not now", not an error.
// - EBADF and EFAULT mean pop3d passed a closed descriptor or a bad pointer: a bug in pop3d,
//   never client data or file contents, so it stops the process (`preconditionFailure`) rather
//   than run on with descriptors it has lost track of.
// - Everything else is thrown as a `SyscallError` carrying errno and the call's name; each
//   module turns it into its own error where it has more to say (Maildrop adds the path and
//   the RFC 3206 class, `MaildropError.fromErrno`).

/// A failed system call: errno and the call's name, e.g. `accept4: Too many open files (errno 24)`.
public struct SyscallError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The errno value the call failed with (never EINTR, EBADF or EFAULT from this family).
    public let errno: Int32
    /// The call's name as given to `syscall`, with its variant when one name covers several
    /// (`fcntl(F_OFD_SETLK)`, `epoll_ctl(ADD)`).
    public let name: StaticString

    /// Makes the error for `call` (a name as `syscall` takes it) having failed with `errno`.
    public init(errno: Int32, call: StaticString) {
        self.errno = errno
        self.name = call
    }

    /// `name` as a `String`.
    public var call: String { "\(name)" }

    /// Equal when errno and the call's name (as text) are equal.
    public static func == (lhs: SyscallError, rhs: SyscallError) -> Bool {
        lhs.errno == rhs.errno && lhs.call == rhs.call
    }

    /// `call: strerror text (errno N)`, or `call: errno N` when strerror(3) has no text.
    public var description: String {
        guard let message = strerror(errno) else { return "\(call): errno \(errno)" }
        return "\(call): \(String(cString: message)) (errno \(errno))"
    }
}

/// Result of a call on a nonblocking descriptor: EAGAIN is an expected value, not an error.
public enum IOResult<T>: Equatable where T: Equatable {
    /// The call succeeded with this result (bytes moved, a descriptor, a count).
    case processed(T)
    /// EAGAIN/EWOULDBLOCK: nothing to do now; wait for readiness.
    case wouldBlock
}

/// Runs `body`, a kernel call returning a negative value with `errno` set on failure, and
/// classifies the outcome: a non-negative result is `.processed`, EINTR runs `body` again,
/// EAGAIN/EWOULDBLOCK is `.wouldBlock`, EBADF/EFAULT stop the process (a bug in pop3d), any
/// other errno is thrown.
/// - Parameters:
///   - name: the call's name for the error (`"read"`, `"epoll_ctl(ADD)"`).
///   - body: the call; run once per attempt.
/// - Throws: `SyscallError(errno:call: name)`.
@inlinable @inline(__always)
public func syscall<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws(SyscallError) -> IOResult<T> {
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
            throw SyscallError(errno: err, call: name)
        }
    }
}

/// `syscall` for calls where EAGAIN is an error too (setup calls, files, blocking waits): the
/// non-negative result, or EAGAIN thrown like any other errno.
/// - Throws: `SyscallError(errno:call: name)`, EAGAIN included.
@inlinable @inline(__always)
@discardableResult
public func syscallBlocking<T: FixedWidthInteger>(_ name: StaticString, _ body: () -> T) throws(SyscallError) -> T {
    switch try syscall(name, body) {
    case .processed(let value): return value
    case .wouldBlock: throw SyscallError(errno: EAGAIN, call: name)
    }
}

/// close(2), errors ignored and EINTR not retried: on Linux the descriptor is released even
/// when close is interrupted or reports EIO, so retrying could close a descriptor another
/// thread of the process has just received under the same number.
@inlinable @inline(__always)
public func closeDescriptor(_ fd: Int32) {
    _ = Glibc.close(fd)
}

/// Sleeps the calling thread for `seconds` (nothing when ≤ 0), resuming with the time left
/// when a signal interrupts nanosleep(2). For worker threads only, never the event loop.
public func sleepThread(seconds: Double) {
    guard seconds > 0 else { return }
    let whole = seconds.rounded(.towardZero)
    var request = timespec(tv_sec: Int(whole), tv_nsec: Int((seconds - whole) * 1e9))
    var left = timespec()
    while nanosleep(&request, &left) != 0 && Glibc.errno == EINTR { request = left }
}
