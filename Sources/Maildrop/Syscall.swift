import Glibc

/// The one place where Maildrop calls into the kernel: EINTR is retried here
/// and only here; a failure becomes a `MaildropError` carrying the call's name
/// and the path (DESIGN.md convention 1). `ENOENT` is common enough in a
/// Maildir (files renamed by other agents) that callers ask for it as a value.
enum Sys {
    /// Result of a call that may legitimately find nothing.
    enum Found<T> {
        case ok(T)
        case missing
    }

    /// Runs `body` until it does not fail with EINTR; returns its non-negative
    /// result or throws the classified errno.
    @inline(__always)
    static func call(
        _ name: StaticString, _ path: @autoclosure () -> String, _ body: () -> Int32
    ) throws(MaildropError) -> Int32 {
        while true {
            let r = body()
            if r >= 0 { return r }
            let err = errno
            if err == EINTR { continue }
            throw MaildropError.fromErrno(err, call: name, path: path())
        }
    }

    /// Like `call`, but `ENOENT` is returned as `.missing` instead of thrown.
    @inline(__always)
    static func callOrMissing(
        _ name: StaticString, _ path: @autoclosure () -> String, _ body: () -> Int32
    ) throws(MaildropError) -> Found<Int32> {
        while true {
            let r = body()
            if r >= 0 { return .ok(r) }
            let err = errno
            if err == EINTR { continue }
            if err == ENOENT { return .missing }
            throw MaildropError.fromErrno(err, call: name, path: path())
        }
    }

    /// `read(2)` with EINTR retried; returns 0 at end of file.
    @inline(__always)
    static func read(
        _ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, path: @autoclosure () -> String
    ) throws(MaildropError) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        while true {
            let n = Glibc.read(fd, base, buffer.count)
            if n >= 0 { return n }
            let err = errno
            if err == EINTR { continue }
            throw MaildropError.fromErrno(err, call: "read", path: path())
        }
    }

    /// Writes all of `bytes`, retrying short writes and EINTR.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(MaildropError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.write(fd, base + offset, raw.count - offset)
            }
            if n < 0 {
                let err = errno
                if err == EINTR { continue }
                throw MaildropError.fromErrno(err, call: "write", path: path)
            }
            offset += n
        }
    }

    /// `fstatat` without following symlinks; `.missing` when the entry vanished.
    static func stat(
        _ dirfd: Int32, _ name: String, path: @autoclosure () -> String
    ) throws(MaildropError) -> Found<Glibc.stat> {
        var st = Glibc.stat()
        switch try callOrMissing("fstatat", path(), { fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) }) {
        case .ok: return .ok(st)
        case .missing: return .missing
        }
    }

    /// Closes `fd`, ignoring errors: on Linux the descriptor is gone even when
    /// close reports EINTR or EIO, so retrying could close someone else's fd.
    @inline(__always)
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Names of the entries of the directory `dirfd` (dot-files skipped),
    /// with their `d_type`. The descriptor is duplicated so `dirfd` stays open.
    static func listDirectory(_ dirfd: Int32, path: String) throws(MaildropError) -> [(name: String, type: UInt8)] {
        let dupfd = try call("dup", path, { fcntl(dirfd, F_DUPFD_CLOEXEC, 0) })
        guard let dir = fdopendir(dupfd) else {
            let err = errno
            close(dupfd)
            throw MaildropError.fromErrno(err, call: "fdopendir", path: path)
        }
        defer { closedir(dir) }
        // The duplicate shares the file offset with `dirfd`: start at the top.
        rewinddir(dir)
        var out: [(name: String, type: UInt8)] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                let err = errno
                if err == 0 { break }
                if err == EINTR { continue }
                throw MaildropError.fromErrno(err, call: "readdir", path: path)
            }
            let type = entry.pointee.d_type
            let name: String? = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: 256) { cname in
                    // Dot-files: ".", "..", and temp files of other agents.
                    if cname[0] == 0x2E { return nil }
                    // A name that is not UTF-8 could not be opened again from a
                    // repaired String; Maildir names are ASCII in practice.
                    return String(validatingCString: cname)
                }
            }
            if let name { out.append((name, type)) }
        }
        return out
    }
}
