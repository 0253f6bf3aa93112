import Glibc

/// Computes the size of a message as RETR sends it before dot-stuffing:
/// every LF not preceded by CR becomes CRLF, and a last line without a line
/// end is ended with CRLF (RFC 1939 §3: multi-line responses are CRLF lines).
/// Resumable across chunks, so a message of any size is counted in bounded
/// memory.
struct CRLFSizeCounter {
    private(set) var octets = 0
    private var last: UInt8 = UInt8(ascii: "\n")
    private var sawAny = false

    mutating func consume(_ chunk: UnsafeRawBufferPointer) {
        guard let base = chunk.baseAddress, chunk.count > 0 else { return }
        var added = 0
        var previous = last
        var offset = 0
        // memchr finds the LFs; everything between them costs nothing.
        while offset < chunk.count {
            guard let hit = memchr(base + offset, 0x0A, chunk.count - offset) else { break }
            let at = base.distance(to: UnsafeRawPointer(hit))
            let before = at == 0 ? previous : chunk[at - 1]
            if before != 0x0D { added += 1 }
            offset = at + 1
        }
        // Saturating: a file of more than 4 EiB (sparse) doubles past Int.max.
        octets = Self.saturatingAdd(octets, Self.saturatingAdd(chunk.count, added))
        previous = chunk[chunk.count - 1]
        last = previous
        sawAny = true
    }

    static func saturatingAdd(_ a: Int, _ b: Int) -> Int {
        let (r, overflow) = a.addingReportingOverflow(b)
        return overflow ? Int.max : r
    }

    /// The final size: adds the CRLF that ends an unterminated last line.
    var total: Int {
        guard sawAny, last != 0x0A else { return octets }
        // A trailing lone CR is sent as CR followed by the CRLF we add.
        return Self.saturatingAdd(octets, 2)
    }

    /// Reads the file `name` in `dirfd` through `buffer` and returns its CRLF
    /// size; `nil` when the file vanished (renamed or deleted meanwhile) or is no longer a
    /// regular file (a FIFO put in its place is never opened for a blocking read).
    /// `cancellation` is checked before every chunk: `.cancelled` when raised.
    static func measure(
        dirfd: Int32, name: String, path: @autoclosure () -> String, buffer: UnsafeMutableRawBufferPointer,
        cancellation: CancellationFlag? = nil
    ) throws(MaildropError) -> Int? {
        let fd: Int32
        switch try Sys.openRegularFile(dirfd, name, path: path()) {
        case .ok(let f): fd = f
        case .missing, .wrongKind: return nil
        }
        defer { Sys.close(fd) }
        var counter = CRLFSizeCounter()
        while true {
            if let cancellation, cancellation.isCancelled { throw .cancelled }
            let n = try Sys.read(fd, buffer, path: path())
            if n == 0 { break }
            counter.consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return counter.total
    }
}
