import Glibc
import Testing
@testable import Maildrop

@Suite struct ReaderTests {
    @Test func readsExactBytesInChunks() throws {
        let f = try Fixture()
        let body = Array("Subject: x\n\nline one\r\n.dot\nlast".utf8)
        try f.writer.deliver(body, fileName: "1700000000.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        for chunk in [1, 3, 7, 4096] {
            let reader = try md.openMessage(0)
            #expect(try readAll(reader, chunk: chunk) == body)
            reader.close()
            reader.close()
            let empty = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
            defer { empty.deallocate() }
            #expect(try reader.read(into: empty) == 0)
        }
        #expect(throws: MaildropError.self) { try md.openMessage(1) }
        #expect(throws: MaildropError.self) { try md.openMessage(-1) }
    }

    @Test func findsMessageRenamedByAnotherProgram() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("one\n".utf8), fileName: "1700000000.M0P1.host")
        try f.writer.deliver(Array("two\n".utf8), fileName: "1700000001.M0P1.host:2,", into: .cur)
        let md = try Maildrop.open(path: f.root)
        // A MUA moves new/ → cur/ and sets flags while we are logged in.
        rename(f.root + "/new/1700000000.M0P1.host", f.root + "/cur/1700000000.M0P1.host:2,S")
        rename(f.root + "/cur/1700000001.M0P1.host:2,", f.root + "/cur/1700000001.M0P1.host:2,RS")
        #expect(try readAll(md.openMessage(0)) == Array("one\n".utf8))
        #expect(try readAll(md.openMessage(1)) == Array("two\n".utf8))
        #expect(md.uid(0) == "1700000000.M0P1.host")
        // Gone for good: an error value, not a crash.
        unlink(f.root + "/cur/1700000001.M0P1.host:2,RS")
        #expect(throws: MaildropError.self) { try md.openMessage(1) }
    }

    @Test func uidsSurviveFlagChangesMovesAndReopen() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("a\n".utf8), fileName: "1700000000.M0P1.host,S=2,W=3")
        let before = try Maildrop.open(path: f.root)
        let uid = before.uid(0)
        before.close()
        rename(f.root + "/new/1700000000.M0P1.host,S=2,W=3", f.root + "/cur/1700000000.M0P1.host,S=2,W=3:2,S")
        let after = try Maildrop.open(path: f.root)
        #expect(after.uid(0) == uid)
        #expect(uid == "1700000000.M0P1.host")
    }

    @Test func streamsALargeMessageInBoundedChunks() throws {
        let f = try Fixture()
        // 32 MiB of LF lines, written in pieces so the test itself stays small.
        let path = f.root + "/new/1700000000.M0P1.host"
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        var line = [UInt8](repeating: UInt8(ascii: "x"), count: 63)
        line.append(0x0A)
        let piece = Array([[UInt8]](repeating: line, count: 16_384).joined())  // 1 MiB
        for _ in 0..<32 { piece.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) } }
        close(fd)
        let total = 32 * piece.count
        let md = try Maildrop.open(path: f.root)
        #expect(md.size(0) == total + total / 64)
        let reader = try md.openMessage(0)
        let chunk = 16 * 1024
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 1)
        defer { buffer.deallocate() }
        var seen = 0
        var counter = CRLFSizeCounter()
        while true {
            let n = try reader.read(into: buffer)
            if n == 0 { break }
            #expect(n <= chunk)
            counter.consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            seen += n
        }
        #expect(seen == total)
        #expect(counter.total == md.size(0))
    }
}
