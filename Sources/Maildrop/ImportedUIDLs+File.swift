import Glibc
import SystemCalls

/// Reading and replacing the state files in a Maildir root (pop3d's `pop3d.uidls`,
/// `pop3d.sizes` and `pop3d.index`, Courier's `courierpop3dsizelist`, Dovecot's
/// `dovecot-uidlist`): the one reader of them all, opened `O_NONBLOCK|O_NOFOLLOW` relative to the root
/// (a FIFO or a link under the name is never waited on nor followed), bounded in size, and
/// replaced through a temporary file and a rename.
enum StateFile {
    /// What `read` found.
    enum Read {
        case absent
        /// The whole file, and its `fstat` as it was opened.
        case bytes([UInt8], Glibc.stat)
        /// There, but not readable as a file of at most the size asked (the reason).
        case unusable(String)
        /// Fewer octets than its size: cut while being read (another program rewriting it in
        /// place); the reason.
        case shorter(String)
    }

    /// What `load` found: a parsed file, none, or the reason it cannot be used.
    enum Loaded<Value> {
        case absent
        case valid(Value)
        case unusable(String)
    }

    /// Reads `name` whole (at most `Maildrop.quickCacheBytes` when `quick`: more is
    /// `.wouldBlock`, a worker reads it; at most `maxBytes` otherwise) and parses it; a file
    /// that cannot be read or parsed is `.unusable` with the reason, and left alone.
    static func load<Value, Failure: Error & CustomStringConvertible>(
        rootfd: Int32, name: String, maxBytes: Int, quick: Bool,
        parse: ([UInt8]) -> Result<Value, Failure>
    ) throws(MaildropError) -> Loaded<Value> {
        switch try read(rootfd: rootfd, name: name, maxBytes: quick ? Maildrop.quickCacheBytes : maxBytes, quick: quick) {
        case .absent: return .absent
        case .unusable(let why), .shorter(let why): return .unusable(why)
        case .bytes(let bytes, _):
            switch parse(bytes) {
            case .success(let value): return .valid(value)
            case .failure(let error): return .unusable(error.description)
            }
        }
    }

    /// Reads `name` in `rootfd` whole. Larger than `maxBytes`: with `quick` `.wouldBlock`
    /// (the storage workers read it), otherwise `.unusable`, without reading it.
    static func read(rootfd: Int32, name: String, maxBytes: Int, quick: Bool) throws(MaildropError) -> Read {
        let fd: Int32
        // The open's own fstat gives the size (issue 17: one system call fewer per file read).
        var st = Glibc.stat()
        do throws(MaildropError) {
            switch try Sys.openRegularFile(rootfd, name, stat: &st, path: name) {
            case .ok(let f): fd = f
            case .missing: return .absent
            case .wrongKind(let mode): return .unusable("\(name) is \(Sys.kindName(mode))")
            }
        } catch {
            return .unusable("\(error)")
        }
        defer { Sys.close(fd) }
        let size = Int(st.st_size)
        guard size <= maxBytes else {
            if quick { throw .wouldBlock }
            return .unusable("\(name) has \(size) octets, above the \(maxBytes) read at most")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        while filled < bytes.count {
            let read = bytes.withUnsafeMutableBytes { raw in
                Result { () throws(SyscallError) -> Int in
                    guard let base = raw.baseAddress else { return 0 }
                    return try syscallBlocking("read") { Glibc.read(fd, base + filled, raw.count - filled) }
                }
            }
            switch read {
            case .failure(let error): return .unusable("read(\(name)) failed (errno \(error.errno))")
            case .success(0): return .shorter("\(name) is shorter than its size")
            case .success(let n): filled += n
            }
        }
        return .bytes(bytes, st)
    }

    /// Replaces `name` in `rootfd` with `bytes`: written to `name.tmp` (removed first, created
    /// `O_EXCL|O_NOFOLLOW`), fsynced (this file is not a cache: it holds UIDLs no listing can
    /// give back), renamed over `name`. The caller holds the maildrop lock, so there is one
    /// writer at a time.
    static func replace(rootfd: Int32, rootPath: String, name: String, bytes: [UInt8]) throws(MaildropError) {
        let tempName = name + ".tmp"
        let tempPath = rootPath + "/" + tempName
        _ = try Sys.call("unlinkat", tempPath, unless: ENOENT) { unlinkat(rootfd, tempName, 0) }
        let fd: Int32
        switch try Sys.openRegularFile(rootfd, tempName, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600, path: tempPath) {
        case .ok(let f): fd = f
        case .missing: throw MaildropError.temporary("openat(\(tempPath)): vanished while being created")
        case .wrongKind(let mode): throw Maildrop.refused(tempPath, mode, root: false)
        }
        do throws(MaildropError) {
            try Sys.writeAll(fd, bytes, path: tempPath)
            _ = try Sys.call("fsync", tempPath) { fsync(fd) }
        } catch {
            Sys.close(fd)
            _ = unlinkat(rootfd, tempName, 0)
            throw error
        }
        Sys.close(fd)
        do throws(MaildropError) {
            _ = try Sys.call("renameat", rootPath + "/" + name) { renameat(rootfd, tempName, rootfd, name) }
        } catch {
            _ = unlinkat(rootfd, tempName, 0)
            throw error
        }
    }
}
