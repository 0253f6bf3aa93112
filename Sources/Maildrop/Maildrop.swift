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
    /// Entries a `quick` open lists at most (about a millisecond of stat calls).
    public static let quickEntryLimit = 256
    /// Read buffer used to compute sizes at login (one per open maildrop).
    public static let measureChunkBytes = 64 * 1024
    /// Mode of directories created on first login (Dovecot uses 0700 too).
    static let directoryMode: mode_t = 0o700

    public let path: String
    public internal(set) var messages: [MessageInfo]
    public internal(set) var statistics: OpenStatistics

    private var lockfd: Int32
    /// new/ and cur/, open only while needed (listing, a RETR, UPDATE): an idle logged-in
    /// session holds just its socket and the lock, so 50,000 sessions fit the fd budget.
    private var newfd: Int32
    private var curfd: Int32

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
        closeDirectories()
    }

    /// Closes new/ and cur/; `directoryFD` opens them again when needed.
    func closeDirectories() {
        if newfd >= 0 { Sys.close(newfd); newfd = -1 }
        if curfd >= 0 { Sys.close(curfd); curfd = -1 }
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
    /// With `quick`, the open is meant for an event loop: it throws `.wouldBlock` (holding
    /// nothing) instead of listing more than `quickEntryLimit` entries or reading a message
    /// whose size is neither in its name nor in the size cache.
    public static func open(path: String, createIfMissing: Bool = true, quick: Bool = false) throws(MaildropError) -> Maildrop {
        guard path.hasPrefix("/"), !path.utf8.contains(0) else {
            throw .permanent("maildrop path \"\(path)\" is not absolute")
        }
        let rootfd: Int32
        switch try Sys.callOrMissing("open", path, { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) {
        case .ok(let fd): rootfd = fd
        case .missing:
            // First login (as Dovecot does): create it. Only then, so that a normal login
            // costs no failed mkdir calls.
            guard createIfMissing else { throw .permanent("open(\(path)): no such Maildir") }
            try makeDirectories(path)
            rootfd = try Sys.call("open", path) { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
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

        var newfd = try openSubdirectoryIfPresent(rootfd, path, "new")
        if newfd < 0 && createIfMissing {
            for sub in ["new", "cur", "tmp"] {
                let r = mkdirat(rootfd, sub, directoryMode)
                if r != 0 && errno != EEXIST {
                    throw MaildropError.fromErrno(errno, call: "mkdirat", path: path + "/" + sub)
                }
            }
            newfd = try openSubdirectoryIfPresent(rootfd, path, "new")
        }
        guard newfd >= 0 else { throw .permanent("openat(\(path)/new): no such directory") }
        let curfd: Int32
        do {
            curfd = try openSubdirectory(rootfd, path, "cur")
        } catch {
            Sys.close(newfd)
            throw error
        }
        locked = true
        let maildrop = Maildrop(path: path, lockfd: lockfd, newfd: newfd, curfd: curfd)
        try maildrop.list(rootfd: rootfd, quick: quick)
        maildrop.closeDirectories()
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

    private static func openSubdirectoryIfPresent(_ rootfd: Int32, _ root: String, _ name: String) throws(MaildropError) -> Int32 {
        switch try Sys.callOrMissing("openat", root + "/" + name, { openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) {
        case .ok(let fd): return fd
        case .missing: return -1
        }
    }

    /// The descriptor of new/ or cur/, opened again after login when needed.
    func directoryFD(_ folder: MessageInfo.Folder) throws(MaildropError) -> Int32 {
        if folder == .new {
            if newfd < 0 { newfd = try Sys.call("open", path + "/new") { Glibc.open(path + "/new", O_RDONLY | O_DIRECTORY | O_CLOEXEC) } }
            return newfd
        }
        if curfd < 0 { curfd = try Sys.call("open", path + "/cur") { Glibc.open(path + "/cur", O_RDONLY | O_DIRECTORY | O_CLOEXEC) } }
        return curfd
    }

    func filePath(_ folder: MessageInfo.Folder, _ name: String) -> String {
        path + "/" + folder.directoryName + "/" + name
    }
}
