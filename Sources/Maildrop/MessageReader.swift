import Glibc

/// Streams one message file in chunks the caller sizes: memory stays bounded
/// whatever the message size (a 1 GiB RETR costs one buffer).
///
/// Bytes are returned as stored (LF or CRLF); the POP3 encoder converts line
/// endings and dot-stuffs. Not thread-safe.
public final class MessageReader {
    private var fd: Int32
    /// Path the file was opened under, for error messages.
    public let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        // The whole file is read front to back once: let the kernel read ahead.
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    deinit { close() }

    /// Fills up to `buffer.count` bytes; returns how many, 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(MaildropError) -> Int {
        guard fd >= 0 else { return 0 }
        return try Sys.read(fd, buffer, path: path)
    }

    /// Releases the descriptor. Idempotent.
    public func close() {
        if fd >= 0 {
            Sys.close(fd)
            fd = -1
        }
    }
}

extension Maildrop {
    /// Opens message `i` (0-based) for streaming. When the file was renamed
    /// since login (flags changed, moved new/ → cur/) it is found again by its
    /// unique name; a message that is gone for good is `.temporary` (another
    /// agent expunged it; RFC 3206 §4 leaves the retry to the client).
    public func openMessage(_ i: Int) throws(MaildropError) -> MessageReader {
        guard messages.indices.contains(i) else {
            throw .permanent("message index \(i) out of range 0..<\(messages.count)")
        }
        let info = messages[i]
        if let reader = try openFile(info.folder, info.fileName) { return reader }
        if let now = try locate(uniqueName: info.uniqueName) {
            messages[i].folder = now.folder
            messages[i].fileName = now.fileName
            if let reader = try openFile(now.folder, now.fileName) { return reader }
        }
        throw .temporary("open(\(filePath(info.folder, info.fileName))): message was removed by another program")
    }

    private func openFile(_ folder: MessageInfo.Folder, _ name: String) throws(MaildropError) -> MessageReader? {
        let p = filePath(folder, name)
        switch try Sys.callOrMissing("openat", p, { openat(directoryFD(folder), name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }) {
        case .ok(let fd): return MessageReader(fd: fd, path: p)
        case .missing: return nil
        }
    }
}
