import Glibc

/// Streams one message file in chunks the caller sizes: memory stays bounded
/// whatever the message size (a 1 GiB RETR costs one buffer).
///
/// Bytes are returned as stored (LF or CRLF); the POP3 encoder converts line
/// endings and dot-stuffs. Not thread-safe.
public final class MessageReader {
    /// Files at least this large get POSIX_FADV_SEQUENTIAL (more read-ahead); for small ones
    /// the default read-ahead already covers the file and the call would be a wasted syscall.
    public static let sequentialHintBytes = 1 << 20

    private var fd: Int32
    /// Bytes left of the size listed at login. Maildir files do not change after delivery; the
    /// LIST size was computed from exactly these bytes, so the reader stops there and spares
    /// the read that would only confirm the end of the file. A file found larger at the open
    /// is refused there (`Maildrop.openFile`): stopping at the old size would cut it.
    private var remaining: Int
    /// Path the file was opened under, for error messages: built when asked (issue 17: a
    /// RETR formats no path it does not report), from the maildrop's path and the name.
    public var path: String { root + "/" + folder.directoryName + "/" + name }
    private let root: String
    private let folder: MessageInfo.Folder
    private let name: String
    /// True once `read` met the end of the file before the size listed at login: another
    /// program truncated or replaced the file. The caller that announced the listed size
    /// cannot deliver it (POP3Connection+Messages drops the connection).
    public private(set) var endedShort = false

    init(fd: Int32, root: String, folder: MessageInfo.Folder, name: String, expectedBytes: Int) {
        self.fd = fd
        self.root = root
        self.folder = folder
        self.name = name
        self.remaining = expectedBytes
        if expectedBytes >= Self.sequentialHintBytes {
            _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        }
    }

    deinit { close() }

    /// Fills up to `buffer.count` bytes; returns how many, 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(MaildropError) -> Int {
        guard fd >= 0, remaining > 0 else { return 0 }
        let want = min(buffer.count, remaining)
        let n = try Sys.read(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), path: path)
        if n == 0 { endedShort = true }
        remaining = n == 0 ? 0 : remaining - n
        return n
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
    /// unique name, with one listing that relocates every renamed message and notes every
    /// removed one; a message that is gone for good is `.gone` (another agent expunged
    /// it; RFC 3206 §4 leaves the retry to the client), at once and without a listing when an
    /// earlier listing already found it gone. The listing runs where the caller runs: O(messages
    /// in the Maildir), once per burst of renames by other programs. A message file that is no
    /// longer a regular file (a FIFO, a symbolic link put in its place) is `.permanent` and is never opened for a read that
    /// could block. One rewritten in place with more octets than sized at login is
    /// `.temporary` (it would be read cut at that size) and the login index is removed, unless
    /// `refusingGrown` is false: a caller that reads only the start of the message (the
    /// X-UIDL header scan of the offline `pop3d uidl` tools) takes it as it is.
    public func openMessage(_ i: Int, refusingGrown: Bool = true) throws(MaildropError) -> MessageReader {
        guard messages.indices.contains(i) else {
            throw .permanent("message index \(i) out of range 0..<\(messages.count)")
        }
        let info = messages[i]
        // Built only when thrown: the text is an allocation the RETR path need not pay.
        func removed() -> MaildropError {
            .gone("open(\(filePath(info.folder, info.fileName))): message was removed by another program")
        }
        if removedSinceLogin.contains(i) { throw removed() }
        if let reader = try openFile(info.folder, info.fileName, expectedBytes: info.fileSize, refusingGrown: refusingGrown) {
            return reader
        }
        try relocateAll()
        let now = messages[i]
        if now.folder != info.folder || now.fileName != info.fileName,
           let reader = try openFile(now.folder, now.fileName, expectedBytes: info.fileSize, refusingGrown: refusingGrown) {
            return reader
        }
        removedSinceLogin.insert(i)
        throw removed()
    }

    private func openFile(_ folder: MessageInfo.Folder, _ name: String, expectedBytes: Int,
                          refusingGrown: Bool) throws(MaildropError) -> MessageReader? {
        let dirfd = try directoryFD(folder)
        var st = Glibc.stat()  // the regular-file check's fstat: the size costs no extra call
        switch try Sys.openRegularFile(dirfd, name, stat: &st, path: filePath(folder, name)) {
        case .ok(let fd):
            // The reader stops at the size sized at login (no read to confirm the end), so a
            // file another program rewrote in place with more octets would be sent cut at that
            // size, with its terminator: a client would take a different, truncated message
            // (and may DELE it). Refused before any `+OK`. A file with fewer octets is found
            // by the stream itself (`endedShort`: the connection is dropped, no terminator).
            if refusingGrown && Int(st.st_size) > expectedBytes {
                Sys.close(fd)
                forgetLoginIndex()
                throw .temporary("\(filePath(folder, name)): \(st.st_size) octets, \(expectedBytes) when sized at login: rewritten in place by another program (the next login sizes it again)")
            }
            return MessageReader(fd: fd, root: path, folder: folder, name: name, expectedBytes: expectedBytes)
        case .missing: return nil
        case .wrongKind(let mode): throw Maildrop.refused(filePath(folder, name), mode, root: false)
        }
    }

    /// Removes `pop3d.index` (best effort) after a message was found rewritten in place (by
    /// `openMessage`, or by the caller whose read ended short, `MessageReader.endedShort`): the
    /// index vouches for names without a `stat` while the folders are unchanged, and an
    /// in-place rewrite changes no folder, so without this every later login would list the
    /// old size again and every RETR of the message would be refused. Without the index the
    /// next login checks each file's size and mtime against what it knew and sizes the
    /// rewritten one again. The root must still be the one locked at login (`openLockedRoot`);
    /// the maildrop lock is held, so no other writer races.
    public func forgetLoginIndex() {
        guard isOpen else { return }  // the lock makes this the only writer of the index
        guard let rootfd = try? openLockedRoot() else { return }
        defer { Sys.close(rootfd) }
        LoginIndex.remove(rootfd: rootfd)
    }
}
