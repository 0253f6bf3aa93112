import CShim
import Glibc

/// An open Maildir maildrop for one POP3 session: exclusively locked, listed
/// in delivery order, with exact CRLF sizes and stable UIDs.
///
/// Not thread-safe: a session uses it on the loop thread only. Indices are
/// 0-based positions in `messages` (POP3 message number minus 1); passing an
/// index outside `0..<count` to `size`/`uid` is a caller bug and traps like
/// an Array would, while `openMessage` and `commit` reject it as a value.
public final class Maildrop {
    /// Name of the lock file inside the Maildir. It carries an OFD lock (see
    /// `cshim_ofd_trylock`): released on close, on exit and on kill -9.
    public static let lockFileName = "pop3d.lock"
    /// Read buffer used to compute sizes at login (one per open maildrop).
    public static let measureChunkBytes = 64 * 1024
    /// Mode of directories created on first login (Dovecot uses 0700 too).
    static let directoryMode: mode_t = 0o700

    public let path: String
    public internal(set) var messages: [MessageInfo]
    public internal(set) var statistics: OpenStatistics

    private var lockfd: Int32
    let newfd: Int32
    let curfd: Int32

    private init(path: String, lockfd: Int32, newfd: Int32, curfd: Int32) {
        self.path = path
        self.lockfd = lockfd
        self.newfd = newfd
        self.curfd = curfd
        self.messages = []
        self.statistics = OpenStatistics()
    }

    deinit {
        close()
        Sys.close(newfd)
        Sys.close(curfd)
    }

    /// Number of messages listed at login.
    public var count: Int { messages.count }

    /// Octets of message `i` (0-based) with CRLF line endings.
    public func size(_ i: Int) -> Int { messages[i].size }

    /// RFC 1939 unique-id of message `i` (0-based).
    public func uid(_ i: Int) -> String { messages[i].uid }

    /// Sum of all sizes (for STAT).
    public var totalSize: Int { messages.reduce(0) { $0 + $1.size } }

    /// Whether the lock is still held.
    public var isOpen: Bool { lockfd >= 0 }

    /// Releases the maildrop lock. Idempotent. Message readers already opened
    /// keep working (they own their descriptors).
    public func close() {
        if lockfd >= 0 {
            Sys.close(lockfd)
            lockfd = -1
        }
    }

    /// Opens and locks the Maildir at `path` and lists its messages.
    ///
    /// With `createIfMissing` the directory and its new/ cur/ tmp/ are created
    /// when absent (as Dovecot does on first login); otherwise a missing
    /// Maildir is `.permanent`. A lock held by any other open (this process or
    /// another) gives `.inUse` without waiting.
    public static func open(path: String, createIfMissing: Bool = true) throws(MaildropError) -> Maildrop {
        guard path.hasPrefix("/"), !path.utf8.contains(0) else {
            throw .permanent("maildrop path \"\(path)\" is not absolute")
        }
        if createIfMissing { try makeDirectories(path) }
        let rootfd: Int32
        switch try Sys.callOrMissing("open", path, { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) {
        case .ok(let fd): rootfd = fd
        case .missing: throw .permanent("open(\(path)): no such Maildir")
        }
        defer { Sys.close(rootfd) }

        let lockPath = path + "/" + lockFileName
        let lockfd = try Sys.call("openat", lockPath) {
            openat(rootfd, lockFileName, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        }
        var locked = false
        defer { if !locked { Sys.close(lockfd) } }
        while cshim_ofd_trylock(lockfd) != 0 {
            let err = errno
            if err == EINTR { continue }
            if err == EAGAIN || err == EACCES { throw .inUse }
            throw MaildropError.fromErrno(err, call: "fcntl(F_OFD_SETLK)", path: lockPath)
        }

        if createIfMissing {
            for sub in ["new", "cur", "tmp"] {
                let r = mkdirat(rootfd, sub, directoryMode)
                if r != 0 && errno != EEXIST {
                    throw MaildropError.fromErrno(errno, call: "mkdirat", path: path + "/" + sub)
                }
            }
        }
        let newfd = try openSubdirectory(rootfd, path, "new")
        let curfd: Int32
        do {
            curfd = try openSubdirectory(rootfd, path, "cur")
        } catch {
            Sys.close(newfd)
            throw error
        }
        locked = true
        let maildrop = Maildrop(path: path, lockfd: lockfd, newfd: newfd, curfd: curfd)
        try maildrop.list(rootfd: rootfd)
        return maildrop
    }

    private static func openSubdirectory(_ rootfd: Int32, _ root: String, _ name: String) throws(MaildropError) -> Int32 {
        try Sys.call("openat", root + "/" + name) {
            openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        }
    }

    /// `mkdir -p` for the Maildir root: /srv/mail/%u/Maildir may lack %u.
    private static func makeDirectories(_ path: String) throws(MaildropError) {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, directoryMode) != 0 {
                let err = errno
                if err == EEXIST { continue }
                throw MaildropError.fromErrno(err, call: "mkdir", path: prefix)
            }
        }
    }

    func directoryFD(_ folder: MessageInfo.Folder) -> Int32 {
        folder == .new ? newfd : curfd
    }

    func filePath(_ folder: MessageInfo.Folder, _ name: String) -> String {
        path + "/" + folder.directoryName + "/" + name
    }
}
