/// The `X-UIDL:` header that qpopper (and servers copying it) wrote into every message it
/// served, its UIDL. Read only by `pop3d uidl import --from x-uidl` and `pop3d uidl check`:
/// a header a sender can write is never trusted at login.
enum XUIDLHeader {
    /// Header octets read at most per message: the header block ends at the first empty line,
    /// and qpopper put `X-UIDL:` among the first lines; a longer header is searched this far.
    static let maxHeaderBytes = 64 * 1024

    /// The value of the first `X-UIDL:` field (name case-insensitive) in the header block of
    /// `bytes` (which may be cut anywhere), unfolded (RFC 5322 §2.2.3: CRLF/LF before WSP
    /// removed) and without surrounding spaces and tabs; nil when there is none before the
    /// empty line that ends the header.
    static func find(in bytes: [UInt8]) -> [UInt8]? {
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
            var line = bytes[start..<end]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.isEmpty { break }  // end of the header block
            lines.append(line)
            start = end + 1
        }
        let name = Array("x-uidl:".utf8)
        for (k, line) in lines.enumerated() where line.count >= name.count {
            let head = line.prefix(name.count).map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
            guard head == name else { continue }
            var value = Array(line.dropFirst(name.count))
            var next = k + 1
            while next < lines.count, let first = lines[next].first, first == 0x20 || first == 0x09 {
                value.append(contentsOf: lines[next])
                next += 1
            }
            while let f = value.first, f == 0x20 || f == 0x09 { value.removeFirst() }
            while let l = value.last, l == 0x20 || l == 0x09 { value.removeLast() }
            return value
        }
        return nil
    }
}

extension Maildrop {
    /// The `X-UIDL:` value of message `i`, from at most `XUIDLHeader.maxHeaderBytes` of it; nil
    /// when it has none or another program removed it.
    func xUIDL(_ i: Int) throws(MaildropError) -> [UInt8]? {
        let reader: MessageReader
        do throws(MaildropError) {
            // Only the header block is read: a file rewritten longer since it was sized is
            // scanned as it is, not refused as RETR refuses it.
            reader = try openMessage(i, refusingGrown: false)
        } catch .gone {
            return nil
        }
        defer { reader.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: XUIDLHeader.maxHeaderBytes, alignment: 16)
        defer { buffer.deallocate() }
        var filled = 0
        while filled < buffer.count {
            let n = try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            if n == 0 { break }
            filled += n
            // Stop at the end of the header block; most headers fit the first read.
            if containsBlankLine(buffer[0..<filled]) { break }
        }
        return XUIDLHeader.find(in: Array(buffer[0..<filled]))
    }

    private func containsBlankLine(_ bytes: Slice<UnsafeMutableRawBufferPointer>) -> Bool {
        var previousLF = false
        for b in bytes {
            if b == UInt8(ascii: "\n") {
                if previousLF { return true }
                previousLF = true
            } else if b != UInt8(ascii: "\r") {
                previousLF = false
            }
        }
        return false
    }
}
