import CShim
import Glibc
import SystemCalls

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
    /// Largest size cache a `quick` open reads (on the event loop): 64 KiB hold the entries
    /// of `quickEntryLimit` messages with long host names several times over, and parse in
    /// well under a millisecond. A larger cache belongs to a maildrop too large for the loop
    /// anyway, or is garbage: either way the storage workers read it (and rewrite a bad one).
    public static let quickCacheBytes = 64 * 1024
    /// Directory listings UPDATE makes at most to find messages renamed by another program
    /// since login: one for all of them, and one more only for those renamed again between
    /// that listing and their unlink. A message still moving after that is left in place and
    /// counted as not removed (`-ERR [SYS/TEMP]`), never unlinked under a guessed name.
    public static let commitListingRounds = 2
    /// Read buffer used to compute sizes at login (one per open maildrop).
    public static let measureChunkBytes = 64 * 1024
    /// Mode of directories created on first login (Dovecot uses 0700 too).
    static let directoryMode: mode_t = 0o700

    /// The Maildir root as opened (the expanded mail location).
    public let path: String
    /// The messages listed at login, in delivery order; index = POP3 message number − 1.
    public internal(set) var messages: [MessageInfo]
    /// What the open did (cache hits, sizes read, UIDLs repaired ...), for logs and metrics.
    public internal(set) var statistics: OpenStatistics
    /// Messages (0-based) a relocation listing did not find: another program removed them.
    /// Remembered so that asking for one again answers at once instead of listing the whole
    /// maildrop again on every RETR (`openMessage`).
    var removedSinceLogin = Set<Int>()

    /// The locked lock file (`-1` once closed); the login index reads the filesystem's clock
    /// through it (`LoginIndex.fileSystemClock`).
    private(set) var lockfd: Int32
    /// new/ and cur/, open only while needed (listing, a RETR, UPDATE): an idle logged-in
    /// session holds just its socket and the lock, so 50,000 sessions fit the fd budget.
    private var newfd: Int32
    private var curfd: Int32
    /// Whether the Maildir root (the last component of `path`) may be a symbolic link.
    let allowRootSymlink: Bool
    /// Device and inode of the root at login: new/ and cur/ are opened again later through
    /// the path, and a root replaced meanwhile must not be mistaken for this maildrop.
    let rootIdentity: (dev: UInt, ino: UInt)
    /// Directory listings made after login (locating renamed messages), for tests: UPDATE
    /// makes one, not one per message.
    var directoryScans = 0
    /// The variant of the wire-size rule the listing counts under (`pop3_client_workarounds`).
    var wireSizeRule = WireSizeRule()

    private init(path: String, lockfd: Int32, newfd: Int32, curfd: Int32,
                 allowRootSymlink: Bool, rootIdentity: (dev: UInt, ino: UInt)) {
        self.path = path
        self.lockfd = lockfd
        self.newfd = newfd
        self.curfd = curfd
        self.allowRootSymlink = allowRootSymlink
        self.rootIdentity = rootIdentity
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

    /// Sum of all sizes (for STAT), saturating at `Int.max`: sizes come from disk, and no
    /// sum of them may trap.
    public var totalSize: Int {
        messages.reduce(0) { sum, m in
            let (r, overflow) = sum.addingReportingOverflow(max(0, m.size))
            return overflow ? Int.max : r
        }
    }

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
    /// nothing) instead of listing more than `quickEntryLimit` entries, reading a size cache
    /// larger than `quickCacheBytes`, or reading a message whose size is neither in its name
    /// nor in the size cache.
    ///
    /// Symbolic links: new/, cur/, tmp/, the lock file, the size cache and the messages are
    /// never followed (a link there is `.permanent`, or a skipped message); the root itself
    /// (the last component of `path`) only when `allowRootSymlink` (`maildir_allow_root_symlink`).
    /// Directories above the root are the site's and are followed. Every open inside the
    /// Maildir is relative to its directory descriptor with `O_NONBLOCK|O_NOFOLLOW`, and what
    /// is not a regular file (or a directory where one belongs) is refused, so a FIFO can
    /// never make an open wait.
    ///
    /// `cancellation`, checked between files and between read chunks, makes a long open on a
    /// worker stop with `.cancelled` once its client has gone.
    ///
    /// `wireSize` is the variant of the wire-size rule the sizes are counted under
    /// (`pop3_client_workarounds: oe-ns-eoh`, `WireSizeRule`).
    ///
    /// `loginDelaySeconds` > 0 enforces RFC 2449 §6.5 LOGIN-DELAY with the record kept in the
    /// lock file's modification time (`Maildrop+LoginDelay.swift`): once the lock is taken (so
    /// `.inUse` wins over it), a last login less than the delay ago throws
    /// `.loginDelay(secondsLeft:)` with the lock released; otherwise, once the listing has
    /// succeeded, the modification time becomes now (a failure to write it is
    /// `statistics.loginRecordError`, not an error). A lock file this open created is no
    /// previous login. 0 (the default) neither checks nor records.
    public static func open(
        path: String, createIfMissing: Bool = true, quick: Bool = false,
        allowRootSymlink: Bool = false, loginDelaySeconds: Int = 0, uidl: UIDLOptions = UIDLOptions(),
        cancellation: CancellationFlag? = nil, wireSize: WireSizeRule = WireSizeRule()
    ) throws(MaildropError) -> Maildrop {
        // memchr over the string's own octets (issue 17: `utf8.contains` walked the UTF8View,
        // about 1,700 instructions per login).
        let hasNUL = path.utf8.withContiguousStorageIfAvailable { b in
            guard let base = b.baseAddress else { return false }
            return memchr(base, 0, b.count) != nil
        } ?? path.utf8.contains(0)
        guard path.hasPrefix("/"), !hasNUL else {
            throw .permanent("maildrop path \"\(path)\" is not absolute")
        }
        // A job that waited in the queue while its client left does not even start.
        if let cancellation, cancellation.isCancelled { throw .cancelled }
        let rootfd: Int32
        switch try Sys.openDirectory(AT_FDCWD, path, followSymlink: allowRootSymlink, path: path) {
        case .ok(let fd): rootfd = fd
        case .wrongKind(let mode): throw refused(path, mode, root: true)
        case .missing:
            // First login (as Dovecot does): create it. Only then, so that a normal login
            // costs no failed mkdir calls.
            guard createIfMissing else { throw .permanent("open(\(path)): no such Maildir") }
            try makeDirectories(path)
            switch try Sys.openDirectory(AT_FDCWD, path, followSymlink: allowRootSymlink, path: path) {
            case .ok(let fd): rootfd = fd
            case .wrongKind(let mode): throw refused(path, mode, root: true)
            case .missing: throw .permanent("open(\(path)): no such Maildir")
            }
        }
        defer { Sys.close(rootfd) }
        var rootStat = Glibc.stat()
        _ = try Sys.call("fstat", path) { fstat(rootfd, &rootStat) }

        // Formatted only for an error message (issue 17: a string per login otherwise).
        func lockPath() -> String { path + "/" + lockFileName }
        let (lockfd, lockCreated) = try openLockFile(rootfd, lockPath: lockPath(), noteCreation: loginDelaySeconds > 0)
        var locked = false
        defer { if !locked { Sys.close(lockfd) } }
        // EAGAIN (`.wouldBlock`) or EACCES: another open file description holds the lock.
        let lockResult: IOResult<Int32>
        do throws(SyscallError) {
            lockResult = try syscall("fcntl(F_OFD_SETLK)") { cshim_ofd_trylock(lockfd) }
        } catch where error.errno == EACCES {
            throw .inUse
        } catch {
            throw MaildropError(error, path: lockPath())
        }
        if case .wouldBlock = lockResult { throw .inUse }
        // Under the lock: of two sessions racing for one user, the loser got `.inUse` above.
        var loginRecordError: MaildropError? = nil
        if loginDelaySeconds > 0 && !lockCreated {
            loginRecordError = try checkLoginDelay(lockfd: lockfd, lockPath: lockPath(), delaySeconds: loginDelaySeconds)
        }

        var newfd = try openFolderIfPresent(rootfd, path, "new")
        if newfd < 0 && createIfMissing {
            for sub in ["new", "cur", "tmp"] {
                _ = try Sys.call("mkdirat", path + "/" + sub, unless: EEXIST) { mkdirat(rootfd, sub, directoryMode) }
            }
            newfd = try openFolderIfPresent(rootfd, path, "new")
        }
        guard newfd >= 0 else { throw .permanent("openat(\(path)/new): no such directory") }
        let curfd: Int32
        do throws(MaildropError) {
            curfd = try openFolder(rootfd, path, "cur")
            // tmp/ is not read by POP3, but a Maildir whose tmp/ leads elsewhere is not one
            // this server vouches for either (deliveries through it land outside).
            var st = Glibc.stat()
            if fstatat(rootfd, "tmp", &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) != S_IFDIR {
                Sys.close(curfd)
                throw refused(path + "/tmp", st.st_mode, root: false)
            }
        } catch {
            Sys.close(newfd)
            throw error
        }
        locked = true
        let maildrop = Maildrop(
            path: path, lockfd: lockfd, newfd: newfd, curfd: curfd, allowRootSymlink: allowRootSymlink,
            rootIdentity: (UInt(rootStat.st_dev), UInt(rootStat.st_ino)))
        maildrop.wireSizeRule = wireSize
        try maildrop.list(rootfd: rootfd, quick: quick, cancellation: cancellation)
        try maildrop.assignUIDLs(rootfd: rootfd, options: uidl, quick: quick)
        maildrop.closeDirectories()
        // Only a login that succeeds is recorded: a `quick` open that gave up (`.wouldBlock`),
        // a cancelled or failed one records nothing, so the worker's retry is not refused.
        if loginDelaySeconds > 0 {
            maildrop.statistics.loginRecordError = loginRecordError ?? recordLogin(lockfd: lockfd, lockPath: lockPath())
        }
        return maildrop
    }

    /// The error for a Maildir entry of the wrong kind: a symbolic link (followed nowhere but
    /// at the root, and there only when allowed), a FIFO, a file where a folder belongs.
    static func refused(_ path: String, _ mode: mode_t, root: Bool) -> MaildropError {
        let kind = Sys.kindName(mode)
        if (mode & S_IFMT) == S_IFLNK {
            let why = root
                ? "the Maildir itself may be a link only with maildir_allow_root_symlink"
                : "links inside a Maildir are never followed"
            return .permanent("\(path) is \(kind): refused (\(why))")
        }
        return .permanent("\(path) is \(kind): refused")
    }

    private static func openFolder(_ rootfd: Int32, _ root: String, _ name: String) throws(MaildropError) -> Int32 {
        switch try Sys.openDirectory(rootfd, name, path: root + "/" + name) {
        case .ok(let fd): return fd
        case .missing: throw .permanent("openat(\(root)/\(name)): no such directory")
        case .wrongKind(let mode): throw refused(root + "/" + name, mode, root: false)
        }
    }

    /// `mkdir -p` for the Maildir root: /srv/mail/%u/Maildir may lack %u.
    private static func makeDirectories(_ path: String) throws(MaildropError) {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            _ = try Sys.call("mkdir", prefix, unless: EEXIST) { mkdir(prefix, directoryMode) }
        }
    }

    private static func openFolderIfPresent(_ rootfd: Int32, _ root: String, _ name: String) throws(MaildropError) -> Int32 {
        switch try Sys.openDirectory(rootfd, name, path: root + "/" + name) {
        case .ok(let fd): return fd
        case .missing: return -1
        case .wrongKind(let mode): throw refused(root + "/" + name, mode, root: false)
        }
    }

    /// The Maildir root opened again after login (the caller closes it), only if it is still
    /// the directory locked at login (device and inode): a root moved away and replaced since
    /// is `.temporary`, never used. A symbolic link is followed only as the login allowed.
    func openLockedRoot() throws(MaildropError) -> Int32 {
        let rootfd: Int32
        switch try Sys.openDirectory(AT_FDCWD, path, followSymlink: allowRootSymlink, path: path) {
        case .ok(let fd): rootfd = fd
        case .missing: throw .temporary("open(\(path)): the Maildir was removed since login")
        case .wrongKind(let mode): throw Maildrop.refused(path, mode, root: true)
        }
        var st = Glibc.stat()
        if fstat(rootfd, &st) != 0 {
            let err = errno
            Sys.close(rootfd)
            throw MaildropError.fromErrno(err, call: "fstat", path: path)
        }
        guard UInt(st.st_dev) == rootIdentity.dev && UInt(st.st_ino) == rootIdentity.ino else {
            Sys.close(rootfd)
            throw .temporary("\(path) is no longer the directory locked at login")
        }
        return rootfd
    }

    /// The descriptor of new/ or cur/, opened again after login when needed: through the root
    /// (itself checked to be the directory locked at login), never through a symbolic link.
    func directoryFD(_ folder: MessageInfo.Folder) throws(MaildropError) -> Int32 {
        if folder == .new && newfd >= 0 { return newfd }
        if folder == .cur && curfd >= 0 { return curfd }
        let rootfd = try openLockedRoot()
        defer { Sys.close(rootfd) }
        let fd = try Maildrop.openFolder(rootfd, path, folder.directoryName)
        if folder == .new { newfd = fd } else { curfd = fd }
        return fd
    }

    func filePath(_ folder: MessageInfo.Folder, _ name: String) -> String {
        path + "/" + folder.directoryName + "/" + name
    }
}
