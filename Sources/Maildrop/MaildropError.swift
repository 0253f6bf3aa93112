import Glibc
import SystemCalls

/// Why a maildrop operation failed. The glue maps each case to an RFC 2449 /
/// RFC 3206 response code.
public enum MaildropError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Another session (in this or any other process) holds the maildrop lock
    /// → `-ERR [IN-USE]` (RFC 2449 §8.1.2).
    case inUse
    /// A transient failure (EIO, EAGAIN, ENOSPC, EMFILE, ...) → `[SYS/TEMP]`
    /// (RFC 3206 §4). The message names the call and the path.
    case temporary(String)
    /// A failure that retrying will not fix (EACCES, ENOTDIR, bad path, ...)
    /// → `[SYS/PERM]` (RFC 3206 §4). The message names the call and the path.
    case permanent(String)
    /// The user name would escape the mail location template (`/`, `..`, NUL,
    /// control bytes, empty).
    case invalidUser
    /// A `quick` open gave up: the listing needs more than `Maildrop.quickEntryLimit` entries
    /// or has to read messages to count their sizes. Nothing is held; open it again without
    /// `quick` off the event loop.
    case wouldBlock
    /// The message file is gone: another program expunged it since the listing, and no
    /// rename (new/ → cur/, flags) found it again (`openMessage`). The glue answers
    /// `-ERR [SYS/TEMP]` and the session goes on (issue 10 item 2).
    case gone(String)
    /// The caller's `CancellationFlag` was raised (its client left) while the maildrop was
    /// being opened on a worker; nothing is held.
    case cancelled
    /// RFC 2449 §6.5 LOGIN-DELAY: the user's last login (the modification time of the lock
    /// file, `Maildrop+LoginDelay.swift`) is less than the delay ago; `secondsLeft` (≥ 1) until
    /// a login may succeed. The lock was released → `-ERR [LOGIN-DELAY]` (RFC 2449 §8.1.1).
    case loginDelay(secondsLeft: Int)

    /// A short text for the log: `maildrop in use`, `temporary: call(path): strerror (errno N)` ...
    public var description: String {
        switch self {
        case .inUse: return "maildrop in use"
        case .temporary(let m): return "temporary: \(m)"
        case .permanent(let m): return "permanent: \(m)"
        case .invalidUser: return "invalid user name"
        case .wouldBlock: return "listing needs a worker"
        case .cancelled: return "open cancelled: the client left"
        case .gone(let m): return "gone: \(m)"
        case .loginDelay(let left): return "login delay: \(left) s left"
        }
    }

    /// A failed system call on `path` (`SystemCalls`), classified by `fromErrno`.
    init(_ error: SyscallError, path: String) {
        self = .fromErrno(error.errno, call: error.name, path: path)
    }

    /// Classifies `errno` of a failed `call` on `path`. Unknown errors are
    /// treated as temporary: a client that retries later loses nothing, while
    /// a wrong `[SYS/PERM]` would make it give up on a mailbox for good.
    static func fromErrno(_ err: Int32, call: StaticString, path: String) -> MaildropError {
        let text = "\(call)(\(path)): \(String(cString: strerror(err))) (errno \(err))"
        switch err {
        case EACCES, EPERM, ENOTDIR, ENOENT, ENAMETOOLONG, ELOOP, EROFS, EISDIR, EINVAL,
             EEXIST, EXDEV, ENOTEMPTY, EBADF:
            return .permanent(text)
        default:
            // EIO, EAGAIN, ENOSPC, EDQUOT, EMFILE, ENFILE, ENOMEM, ESTALE, EBUSY,
            // ETIMEDOUT, ENOLCK, ENOBUFS, ...
            return .temporary(text)
        }
    }
}
