import CShim
import Glibc
import SystemCalls

/// Maildrop's calls into the kernel, on the one wrapper family of `SystemCalls` (EINTR retried
/// there and only there, EBADF/EFAULT a bug in pop3d): a failure becomes a `MaildropError`
/// carrying the call's name and the path, classified for RFC 3206 by `MaildropError.fromErrno`
/// (EAGAIN included: a file in a Maildir never legitimately says "not now"). `ENOENT` is common
/// enough in a Maildir (files renamed by other agents) that callers ask for it as a value.
enum Sys {
    /// Result of a call that may legitimately find nothing.
    enum Found<T> {
        case ok(T)
        case missing
    }

    /// Runs `body` through `syscallBlocking`; returns its non-negative result or throws the
    /// classified errno.
    @inline(__always)
    static func call<T: FixedWidthInteger>(
        _ name: StaticString, _ path: @autoclosure () -> String, _ body: () -> T
    ) throws(MaildropError) -> T {
        do throws(SyscallError) {
            return try syscallBlocking(name, body)
        } catch {
            throw MaildropError(error, path: path())
        }
    }

    /// Like `call`, but `ENOENT` is returned as `.missing` instead of thrown.
    @inline(__always)
    static func callOrMissing<T: FixedWidthInteger>(
        _ name: StaticString, _ path: @autoclosure () -> String, _ body: () -> T
    ) throws(MaildropError) -> Found<T> {
        do throws(SyscallError) {
            return .ok(try syscallBlocking(name, body))
        } catch where error.errno == ENOENT {
            return .missing
        } catch {
            throw MaildropError(error, path: path())
        }
    }

    /// Like `call`, but a failure with errno `tolerated` returns nil instead of throwing: the
    /// state the caller wants is there already (ENOENT of an unlink, EEXIST of a mkdir).
    @inline(__always)
    static func call<T: FixedWidthInteger>(
        _ name: StaticString, _ path: @autoclosure () -> String, unless tolerated: Int32, _ body: () -> T
    ) throws(MaildropError) -> T? {
        do throws(SyscallError) {
            return try syscallBlocking(name, body)
        } catch where error.errno == tolerated {
            return nil
        } catch {
            throw MaildropError(error, path: path())
        }
    }

    /// `read(2)`; returns 0 at end of file.
    @inline(__always)
    static func read(
        _ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, path: @autoclosure () -> String
    ) throws(MaildropError) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        return try call("read", path()) { Glibc.read(fd, base, buffer.count) }
    }

    /// Writes all of `bytes`, retrying short writes.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(MaildropError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Result { () throws(SyscallError) -> Int in
                    guard let base = raw.baseAddress else { return 0 }
                    return try syscallBlocking("write") { Glibc.write(fd, base + offset, raw.count - offset) }
                }
            }
            switch written {
            case .success(let n): offset += n
            case .failure(let error): throw MaildropError(error, path: path)
            }
        }
    }

    /// `fstatat` without following symlinks; `.missing` when the entry vanished. Names go to
    /// the kernel through `withCString` here and in the opens below (issue 17): Swift's
    /// implicit `String` to pointer conversion builds a new `utf8CString` array per call.
    static func stat(
        _ dirfd: Int32, _ name: String, path: @autoclosure () -> String
    ) throws(MaildropError) -> Found<Glibc.stat> {
        var st = Glibc.stat()
        switch try callOrMissing("fstatat", path(), { name.withCString { fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) } }) {
        case .ok: return .ok(st)
        case .missing: return .missing
        }
    }

    /// Result of opening something inside a Maildir that must be of one kind.
    enum Opened {
        case ok(Int32)
        case missing
        /// There is an entry, but not of the kind asked for (a FIFO, a device, a socket, a
        /// directory where a file belongs, or a symbolic link: nothing is opened through it).
        case wrongKind(mode_t)
    }

    /// Flags of every open inside a Maildir. `O_NONBLOCK`: opening a FIFO for reading would
    /// otherwise wait for a writer, freezing the event loop (and the whole server) for as long
    /// as a user's file likes; on a regular file or a directory it changes nothing.
    /// `O_NOFOLLOW`: a symbolic link placed in a Maildir must not lead out of it.
    /// O_NOCTTY: a terminal device planted in a Maildir must never become the daemon's
    /// controlling terminal (a hangup on it would be a SIGHUP, a reload).
    static let safeOpenFlags = O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY

    /// Opens `name` in `dirfd` for reading (or with `flags`) only if it is a regular file:
    /// the check is an `fstat` of the descriptor opened, so nothing can swap the entry between
    /// check and use. A FIFO, device, socket, directory or symbolic link is `.wrongKind`
    /// (nothing stays open); a vanished entry is `.missing`.
    static func openRegularFile(
        _ dirfd: Int32, _ name: String, flags: Int32 = O_RDONLY, mode: mode_t = 0,
        path: @autoclosure () -> String
    ) throws(MaildropError) -> Opened {
        var st = Glibc.stat()
        return try openRegularFile(dirfd, name, flags: flags, mode: mode, stat: &st, path: path())
    }

    /// `openRegularFile`, giving the `fstat` it made of the descriptor in `st` (valid when
    /// `.ok`), so that a caller that needs the size does not ask the kernel twice.
    static func openRegularFile(
        _ dirfd: Int32, _ name: String, flags: Int32 = O_RDONLY, mode: mode_t = 0, stat st: inout Glibc.stat,
        path: @autoclosure () -> String
    ) throws(MaildropError) -> Opened {
        let fd: Int32
        do throws(SyscallError) {
            fd = try syscallBlocking("openat") { name.withCString { openat(dirfd, $0, flags | safeOpenFlags, mode) } }
        } catch {
            let err = error.errno
            if err == ENOENT { return .missing }
            // O_NOFOLLOW on a symbolic link: ELOOP. An open for writing of a FIFO without a
            // reader with O_NONBLOCK: ENXIO. A directory opened for writing: EISDIR.
            if err == ELOOP || err == ENXIO || err == EISDIR {
                var st = Glibc.stat()
                if fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return .wrongKind(st.st_mode & S_IFMT) }
            }
            throw MaildropError(error, path: path())
        }
        guard fstat(fd, &st) == 0 else {
            let err = errno
            close(fd)
            throw MaildropError.fromErrno(err, call: "fstat", path: path())
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return .wrongKind(st.st_mode & S_IFMT)
        }
        return .ok(fd)
    }

    /// Opens the directory `name` in `dirfd` (`AT_FDCWD` with an absolute name for the root)
    /// without following a symbolic link unless `followSymlink`. A symbolic link, or anything
    /// else that is not a directory, is `.wrongKind` (Linux answers `O_DIRECTORY|O_NOFOLLOW`
    /// on a link with ENOTDIR, so the entry is looked at again to tell which).
    static func openDirectory(
        _ dirfd: Int32, _ name: String, followSymlink: Bool = false, path: @autoclosure () -> String
    ) throws(MaildropError) -> Opened {
        let flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK | (followSymlink ? 0 : O_NOFOLLOW)
        do throws(SyscallError) {
            return .ok(try syscallBlocking("openat") { name.withCString { openat(dirfd, $0, flags) } })
        } catch {
            let err = error.errno
            if err == ENOENT { return .missing }
            if err == ENOTDIR || err == ELOOP {
                var st = Glibc.stat()
                if fstatat(dirfd, name, &st, followSymlink ? 0 : AT_SYMLINK_NOFOLLOW) == 0 {
                    return .wrongKind(st.st_mode & S_IFMT)
                }
            }
            throw MaildropError(error, path: path())
        }
    }

    /// A word for a file type, for error messages.
    static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFLNK: return "a symbolic link"
        case S_IFIFO: return "a FIFO"
        case S_IFDIR: return "a directory"
        case S_IFSOCK: return "a socket"
        case S_IFCHR, S_IFBLK: return "a device"
        case S_IFREG: return "a regular file"
        default: return "not a regular file"
        }
    }

    /// Closes `fd`, ignoring errors (`closeDescriptor`: on Linux the descriptor is gone even
    /// when close reports EINTR or EIO, so retrying could close someone else's fd).
    @inline(__always)
    static func close(_ fd: Int32) {
        closeDescriptor(fd)
    }

    /// Whether every octet of `bytes` is below 0x80: eight octets at a time (issue 17: every
    /// name of every listing goes through it).
    @inline(__always)
    static func isASCII(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let p = bytes.baseAddress else { return true }
        var acc: UInt64 = 0
        var i = 0
        while i + 8 <= bytes.count {
            acc |= p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < bytes.count {
            acc |= UInt64(bytes[i])
            i += 1
        }
        return acc & 0x8080_8080_8080_8080 == 0
    }

    /// Size of the getdents64 buffer: a directory of ~700 typical Maildir names per call.
    static let directoryBufferBytes = 32 * 1024
    /// The smallest `linux_dirent64` record: 19 octets of header and a name of one octet and its
    /// NUL, padded to 8 (24). `listDirectory` reserves room for a buffer's entries with it.
    static let minimumRecordBytes = 24

    /// Entries of the directory open at `dirfd`, with their `d_type`, without dot-files.
    /// getdents64 straight on the descriptor (rewound first unless it was just opened, so it
    /// can be listed again): no DIR*, so no dup/fstat/fcntl per listing.
    /// With `limit`, reading stops as soon as more than `limit` entries are collected (the
    /// caller sees `count > limit` and gives up), so a huge directory costs one buffer, not a
    /// full scan. `scratch` (at least `directoryBufferBytes`, the caller's for the call) spares
    /// the allocation of a buffer per call (issue 17: a login lists two folders).
    static func listDirectory(
        _ dirfd: Int32, path: @autoclosure () -> String, rewind: Bool = true, limit: Int = Int.max,
        scratch: UnsafeMutableRawBufferPointer? = nil
    ) throws(MaildropError) -> [(name: String, type: UInt8)] {
        if rewind {
            _ = try call("lseek", path()) { lseek(dirfd, 0, SEEK_SET) }
        }
        // The first `directoryBufferBytes` of the scratch: a larger one would read more entries
        // per call, and a quick listing's bound is one buffer of this size.
        let lent = scratch.flatMap {
            $0.count >= directoryBufferBytes ? UnsafeMutableRawBufferPointer(rebasing: $0[0..<directoryBufferBytes]) : nil
        }
        let buffer = lent ?? UnsafeMutableRawBufferPointer.allocate(byteCount: directoryBufferBytes, alignment: 8)
        defer { if lent == nil { buffer.deallocate() } }
        guard let base = buffer.baseAddress else { return [] }
        var out: [(name: String, type: UInt8)] = []
        while out.count <= limit {
            let n = try call("getdents64", path()) { cshim_getdents64(dirfd, buffer.baseAddress, UInt(buffer.count)) }
            if n == 0 { break }
            // Room for this batch at once (issue 17: growing the array entry by entry cost more
            // than the names): a record is at least 24 octets (`minimumRecordBytes`). Grown at
            // least twofold when short: `reserveCapacity` gives exactly what it is asked for, so
            // asking for "count + batch" at every batch copied the array at every batch
            // (quadratic in a folder of 100,000 names).
            let need = out.count + n / minimumRecordBytes
            if out.capacity < need { out.reserveCapacity(max(need, 2 * out.capacity)) }
            // Records of struct linux_dirent64; the offsets are asserted in CShim's maildrop.c.
            var offset = 0
            while offset + CSHIM_DIRENT64_NAME_OFFSET < n {
                let reclen = Int(buffer.loadUnaligned(fromByteOffset: offset + CSHIM_DIRENT64_RECLEN_OFFSET, as: UInt16.self))
                guard reclen > CSHIM_DIRENT64_NAME_OFFSET, offset + reclen <= n else { break }
                let type = buffer[offset + CSHIM_DIRENT64_TYPE_OFFSET]
                let nameStart = offset + CSHIM_DIRENT64_NAME_OFFSET
                // The name ends at its NUL (the record is padded with NULs), found by memchr.
                let nameEnd = memchr(base + nameStart, 0, reclen - CSHIM_DIRENT64_NAME_OFFSET)
                    .map { UnsafeRawPointer($0) - UnsafeRawPointer(base) } ?? offset + reclen
                // Dot-files: ".", "..", and temp files of other agents.
                if nameEnd > nameStart && buffer[nameStart] != 0x2E {
                    // A name that is not UTF-8 could not be opened again from a repaired
                    // String; Maildir names are ASCII in practice.
                    let bytes = UnsafeRawBufferPointer(rebasing: buffer[nameStart..<nameEnd])
                    // ASCII (every Maildir name in practice) needs no validation: String(decoding:)
                    // is then exact and about a third of String(validating:) (issue 17).
                    if Sys.isASCII(bytes) {
                        out.append((String(decoding: bytes, as: UTF8.self), type))
                    } else if let name = String(validating: bytes, as: UTF8.self) {
                        out.append((name, type))
                    }
                }
                offset += reclen
            }
        }
        return out
    }
}
