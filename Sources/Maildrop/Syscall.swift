import CShim
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

    /// Size of the getdents64 buffer: a directory of ~700 typical Maildir names per call.
    static let directoryBufferBytes = 32 * 1024

    /// Entries of the directory open at `dirfd`, with their `d_type`, without dot-files.
    /// getdents64 straight on the descriptor (rewound first unless it was just opened, so it
    /// can be listed again): no DIR*, so no dup/fstat/fcntl per listing.
    static func listDirectory(_ dirfd: Int32, path: String, rewind: Bool = true) throws(MaildropError) -> [(name: String, type: UInt8)] {
        if rewind && lseek(dirfd, 0, SEEK_SET) < 0 {
            throw MaildropError.fromErrno(errno, call: "lseek", path: path)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: directoryBufferBytes, alignment: 8)
        defer { buffer.deallocate() }
        var out: [(name: String, type: UInt8)] = []
        while true {
            let n = cshim_getdents64(dirfd, buffer.baseAddress, UInt(buffer.count))
            if n < 0 {
                if errno == EINTR { continue }
                throw MaildropError.fromErrno(errno, call: "getdents64", path: path)
            }
            if n == 0 { break }
            // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            var offset = 0
            while offset + 19 < n {
                let reclen = Int(buffer.loadUnaligned(fromByteOffset: offset + 16, as: UInt16.self))
                guard reclen > 19, offset + reclen <= n else { break }
                let type = buffer[offset + 18]
                let nameStart = offset + 19
                var nameEnd = nameStart
                while nameEnd < offset + reclen && buffer[nameEnd] != 0 { nameEnd += 1 }
                // Dot-files: ".", "..", and temp files of other agents.
                if nameEnd > nameStart && buffer[nameStart] != 0x2E {
                    // A name that is not UTF-8 could not be opened again from a repaired
                    // String; Maildir names are ASCII in practice.
                    let bytes = UnsafeRawBufferPointer(rebasing: buffer[nameStart..<nameEnd])
                    if let name = String(validating: bytes, as: UTF8.self) {
                        out.append((name, type))
                    }
                }
                offset += reclen
            }
        }
        return out
    }
}
