import Glibc
import SystemCalls

/// Reading, locking and replacing `dovecot-uidlist` in the Maildir root (Dovecot's control
/// directory for INBOX when `mail_location` names no `CONTROL=`).
extension DovecotUIDList {
    static let tempName = "dovecot-uidlist.tmp"
    /// Dovecot's dotlock on the list: `<file>.lock`, created with `O_CREAT|O_EXCL`
    /// (`dotlock_use_excl = yes`, Dovecot's default), holding `<pid>:<hostname>`.
    static let lockName = "dovecot-uidlist.lock"
    /// How long pop3d waits for a `dovecot-uidlist.lock` another process holds before the
    /// login fails with `[SYS/TEMP]`. Dovecot itself waits up to 122 s (its stale timeout
    /// plus 2), but it holds the lock only while it syncs, milliseconds to a second; a
    /// storage worker must not be held minutes, and a client retries a temporary failure.
    static let lockWaitSeconds = 5
    /// Dovecot's `MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT`: a lock whose file and whose list have
    /// not changed for this long is stale and overridden.
    static let staleLockSeconds = 120
    /// Dovecot's `STALE_PID_CHECK_SECS`: a lock younger than this is not checked for a dead
    /// owner (it most likely has a live one).
    static let stalePIDCheckSeconds = 2

    /// What `load` found.
    enum Loaded {
        case absent
        case valid(DovecotUIDList, st: Glibc.stat)
        /// Present but not usable: too large, not a regular file, unreadable. The file is left
        /// alone.
        case unusable(String)
        /// Read, but it does not parse (or changed size while read): maybe caught in the middle
        /// of an append (Dovecot appends records in place under its lock), so worth one more
        /// read under the lock before it is called broken. The file is left alone.
        case broken(String)
    }

    /// Reads the list in `rootfd` (`O_NONBLOCK|O_NOFOLLOW`: a FIFO or a symbolic link under
    /// its name is refused, never waited on or followed). A file larger than `maxBytes` is not
    /// read: `.wouldBlock` with `quick` (a worker reads it), `.unusable` otherwise.
    static func load(rootfd: Int32, maxBytes: Int, quick: Bool) throws(MaildropError) -> Loaded {
        let bytes: [UInt8]
        let st: Glibc.stat
        switch try StateFile.read(rootfd: rootfd, name: fileName, maxBytes: maxBytes, quick: quick) {
        case .absent: return .absent
        case .unusable(let why): return .unusable(why)
        case .shorter(let why): return .broken(why + " (truncated while read)")
        case .bytes(let read, let stat): bytes = read; st = stat
        }
        switch parse(bytes) {
        case .success(let list): return .valid(list, st: st)
        case .failure(let why): return .broken("\(fileName) \(why)")
        }
    }

    /// Replaces the list by `dovecot-uidlist.tmp` renamed into place, as Dovecot's
    /// `maildir_uidlist_recreate` does, under the dotlock: the file is never written in place,
    /// so a reader sees the old file or the new one, whole. The temporary file is synced
    /// before the rename (a crash leaves the old list, not a torn one) and gets the old file's
    /// permission bits (0600 for a new list, as Dovecot in a 0700 Maildir).
    func save(rootfd: Int32, rootPath: String, mode: mode_t) throws(MaildropError) {
        let tempPath = rootPath + "/" + DovecotUIDList.tempName
        _ = try Sys.call("unlinkat", tempPath, unless: ENOENT) { unlinkat(rootfd, DovecotUIDList.tempName, 0) }
        let fd: Int32
        switch try Sys.openRegularFile(
            rootfd, DovecotUIDList.tempName, flags: O_WRONLY | O_CREAT | O_EXCL, mode: mode, path: tempPath) {
        case .ok(let f): fd = f
        case .missing: throw .temporary("openat(\(tempPath)): vanished while being created")
        case .wrongKind(let kind): throw Maildrop.refused(tempPath, kind, root: false)
        }
        do throws(MaildropError) {
            try Sys.writeAll(fd, serialize(), path: tempPath)
            _ = try Sys.call("fdatasync", tempPath) { fdatasync(fd) }
            Sys.close(fd)
            _ = try Sys.call("renameat", rootPath + "/" + DovecotUIDList.fileName) {
                renameat(rootfd, DovecotUIDList.tempName, rootfd, DovecotUIDList.fileName)
            }
        } catch {
            Sys.close(fd)
            _ = unlinkat(rootfd, DovecotUIDList.tempName, 0)
            throw error
        }
    }
}

/// A held `dovecot-uidlist.lock` (Dovecot's `file_dotlock_create` with `O_EXCL`).
struct DovecotDotlock {
    let rootfd: Int32
    let dev: UInt
    let ino: UInt

    /// Creates the lock file exclusively, waiting at most `waitSeconds` for another holder.
    /// A lock is overridden (removed, then taken after a short random pause, as Dovecot does
    /// so that two overriders do not remove each other's new lock) when its owner is a dead
    /// process on this host (the file's `<pid>:<host>`, checked once the lock is older than
    /// `stalePIDCheckSeconds`), or when neither it nor the list changed for
    /// `staleLockSeconds`. Throws `.temporary` when the wait ends, or the open's error.
    static func acquire(rootfd: Int32, rootPath: String, waitSeconds: Int = DovecotUIDList.lockWaitSeconds) throws(MaildropError) -> DovecotDotlock {
        let lockPath = rootPath + "/" + DovecotUIDList.lockName
        let deadline = monotonicSeconds() + Double(waitSeconds)
        var pause = 0.005
        while true {
            if let fd = try Sys.createExclusive(rootfd, DovecotUIDList.lockName, flags: O_RDWR, mode: 0o600, path: lockPath) {
                var st = Glibc.stat()
                let ok = fstat(fd, &st) == 0
                let owner = Array("\(getpid()):\(hostName())".utf8)
                // Dovecot leaves the file empty when it cannot write the owner; so do we.
                if (try? Sys.writeAll(fd, owner, path: lockPath)) == nil { _ = ftruncate(fd, 0) }
                Sys.close(fd)
                guard ok else {
                    _ = unlinkat(rootfd, DovecotUIDList.lockName, 0)
                    throw MaildropError.temporary("fstat(\(lockPath)) failed")
                }
                return DovecotDotlock(rootfd: rootfd, dev: UInt(st.st_dev), ino: UInt(st.st_ino))
            }
            // EEXIST: held, by another process or a stale lock.
            if isStale(rootfd: rootfd) {
                _ = unlinkat(rootfd, DovecotUIDList.lockName, 0)
                sleepThread(seconds: 0.1 + Double(UInt32.random(in: 0..<100_000)) / 1_000_000)
                continue
            }
            let now = monotonicSeconds()
            if now >= deadline {
                throw .temporary("\(lockPath) held by another process for more than \(waitSeconds) s")
            }
            sleepThread(seconds: min(pause, deadline - now))
            pause = min(pause * 2, 0.2)
        }
    }

    /// Removes the lock file if it is still this lock's (Dovecot's `file_dotlock_delete`
    /// checks the same): a lock overridden meanwhile belongs to someone else.
    func release() {
        var st = Glibc.stat()
        guard fstatat(rootfd, DovecotUIDList.lockName, &st, AT_SYMLINK_NOFOLLOW) == 0,
              UInt(st.st_dev) == dev, UInt(st.st_ino) == ino else { return }
        _ = unlinkat(rootfd, DovecotUIDList.lockName, 0)
    }

    /// Dovecot's `check_lock`, for a lock seen for the first time (pop3d never waits long
    /// enough to watch it change).
    static func isStale(rootfd: Int32, now: Int = Int(time(nil))) -> Bool {
        var st = Glibc.stat()
        guard fstatat(rootfd, DovecotUIDList.lockName, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
        let mtime = Int(st.st_mtim.tv_sec)
        let ctime = Int(st.st_ctim.tv_sec)
        if mtime < now - DovecotUIDList.stalePIDCheckSeconds, let pid = localOwner(rootfd: rootfd) {
            if kill(pid, 0) != 0 && errno == ESRCH { return true }
            if pid != getpid() { return false }  // a live owner: never stale
            return true  // our own pid: a leftover of this process (Dovecot recreates it too)
        }
        // The later of the lock's and the list's change times (mtime when it is not in the
        // future and newer than ctime, else ctime), as Dovecot's `update_change_info`.
        func changeTime(_ mtime: Int, _ ctime: Int) -> Int { (mtime <= now && mtime > ctime) ? mtime : ctime }
        var lastChange = changeTime(mtime, ctime)
        var list = Glibc.stat()
        if fstatat(rootfd, DovecotUIDList.fileName, &list, AT_SYMLINK_NOFOLLOW) == 0 {
            lastChange = max(lastChange, changeTime(Int(list.st_mtim.tv_sec), Int(list.st_ctim.tv_sec)))
        }
        return now > lastChange + DovecotUIDList.staleLockSeconds
    }

    /// The owner a lock file names when it is a process of this host (`<pid>:<hostname>`).
    static func localOwner(rootfd: Int32) -> pid_t? {
        guard case .ok(let fd)? = try? Sys.openRegularFile(rootfd, DovecotUIDList.lockName, path: DovecotUIDList.lockName) else {
            return nil
        }
        defer { Sys.close(fd) }
        var buf = [UInt8](repeating: 0, count: 511)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        var text = buf[0..<n]
        if text.last == 0x0A { text = text.dropLast() }
        guard let colon = text.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        guard Array(text[(colon + 1)...]) == Array(hostName().utf8),
              let pid = DovecotUIDList.decimal32(text[..<colon]), pid > 0, pid <= UInt32(Int32.max) else { return nil }
        return pid_t(pid)
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "localhost" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
