import Glibc
import Testing
@testable import Maildrop
import TestSupport

/// A message file another program rewrote in place with more octets than were sized at login.
/// `MessageReader` stops at the size sized at login, so before the open-time check such a file
/// was read cut at that size: a client would have received a different, truncated message.
/// `openMessage` now refuses it (`.temporary`, `-ERR [SYS/TEMP]` in the glue), and removes the
/// login index that would otherwise vouch for the old size at every later login.
@Suite struct RewrittenInPlaceTests {
    static func rewrite(_ path: String, _ bytes: [UInt8]) {
        // In place: the same inode and name, so the folder's times do not change.
        writeFile(path, bytes)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isRewrittenError(_ error: any Error) -> Bool {
        guard case .temporary(let text)? = error as? MaildropError else { return false }
        return text.contains("rewritten in place")
    }

    @Test func longerFileIsRefusedAndTheOthersAreStillRead() throws {
        let f = try Fixture()
        let first = Array("Subject: one\n\nshort\n".utf8)
        let second = Array("Subject: two\n\nbody two\n".utf8)
        try f.writer.deliver(first, fileName: "1700000000.M0P1.host")
        try f.writer.deliver(second, fileName: "1700000001.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        defer { md.close() }
        let index = try #require(md.messages.firstIndex { $0.fileName == "1700000000.M0P1.host" })
        Self.rewrite(f.root + "/new/1700000000.M0P1.host", Array("Subject: one\n\na much longer body now\n".utf8))
        do {
            let reader = try md.openMessage(index)
            let got = try readAll(reader)
            Issue.record("a rewritten, longer file was opened and read as \(got.count) octets")
        } catch {
            #expect(Self.isRewrittenError(error), "\(error)")
        }
        // The other message is untouched and still read whole.
        #expect(try readAll(md.openMessage(1 - index)) == second)
    }

    /// A file rewritten with fewer octets is not refused at the open: the stream finds it
    /// (`endedShort`) and the glue drops the connection, as `ReplyTruthTests` pins.
    @Test func shorterFileIsLeftToTheStream() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("Subject: one\n\na body of some length\n".utf8), fileName: "1700000000.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        defer { md.close() }
        Self.rewrite(f.root + "/new/1700000000.M0P1.host", Array("Subject: x\n".utf8))
        let reader = try md.openMessage(0)
        #expect(try readAll(reader).count == 11)
        #expect(reader.endedShort)
    }

    /// An indexed maildrop (more than `LoginIndex.minimumMessages` messages) trusts the index
    /// for every name while its folders are unchanged, and an in-place rewrite changes no
    /// folder: the refusal removes the index, so the next login sizes the file again and serves it.
    @Test func indexedMaildropForgetsItsIndexAndTheNextLoginSizesTheFileAgain() throws {
        let f = try Fixture()
        try LoginIndexTests.fill(f)
        LoginIndexTests.waitForFileSystemClock(f.root)
        let cold = try LoginIndexTests.open(f)
        #expect(cold.statistics.indexWritten)
        LoginIndexTests.waitForFileSystemClock(f.root)

        let md = try Maildrop.open(path: f.root)
        #expect(md.statistics.foldersListed == 0)  // everything from the index
        let k = 7
        let info = md.messages[k]
        let path = f.root + "/" + info.folder.directoryName + "/" + info.fileName
        let longer = Array("Subject: rewritten\n\nthis body is longer than any body fill() writes\n".utf8)
        Self.rewrite(path, longer)
        do {
            _ = try md.openMessage(k)
            Issue.record("a rewritten, longer file was opened")
        } catch {
            #expect(Self.isRewrittenError(error), "\(error)")
        }
        md.close()
        #expect(!Self.exists(f.root + "/" + LoginIndex.fileName), "the index that vouched for the old size is still there")

        let next = try Maildrop.open(path: f.root)
        defer { next.close() }
        let again = try #require(next.messages.firstIndex { $0.fileName == info.fileName })
        #expect(next.messages[again].size == crlf(longer).count)
        #expect(try readAll(next.openMessage(again)) == longer)
    }

    /// The offline `pop3d uidl` tools read only the header block (`xUIDL`): a message rewritten
    /// longer since the index sized it is scanned as it is, not refused, and the index is left.
    @Test func headerScanTakesALongerFileAsItIs() throws {
        let f = try Fixture()
        try LoginIndexTests.fill(f)
        LoginIndexTests.waitForFileSystemClock(f.root)
        _ = try LoginIndexTests.open(f)
        LoginIndexTests.waitForFileSystemClock(f.root)
        let md = try Maildrop.open(path: f.root)
        defer { md.close() }
        #expect(md.statistics.foldersListed == 0)  // sizes from the index
        let k = 3
        let info = md.messages[k]
        Self.rewrite(f.root + "/" + info.folder.directoryName + "/" + info.fileName,
                     Array("X-UIDL: grown-3\nSubject: rewritten\n\na body longer than the one fill() wrote\n".utf8))
        #expect(try md.xUIDL(k) == Array("grown-3".utf8))
        #expect(Self.exists(f.root + "/" + LoginIndex.fileName))
    }

    /// `forgetLoginIndex` removes the index of the Maildir locked at login only: not once the
    /// maildrop is closed (the lock no longer makes it the only writer), and not in a directory
    /// put in the root's place since login.
    @Test func forgetLoginIndexTouchesOnlyTheLockedRoot() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("Subject: x\n\nx\n".utf8), fileName: "1700000000.M0P1.host")
        let indexPath = f.root + "/" + LoginIndex.fileName
        let md = try Maildrop.open(path: f.root)
        writeFile(indexPath, [0x78])
        md.forgetLoginIndex()
        #expect(!Self.exists(indexPath), "the locked root's index is removed")
        md.close()
        writeFile(indexPath, [0x78])
        md.forgetLoginIndex()
        #expect(Self.exists(indexPath), "a closed maildrop removed an index")

        let other = try Maildrop.open(path: f.root)
        defer { other.close() }
        #expect(rename(f.root, f.temp.path + "/moved") == 0)
        #expect(mkdir(f.root, 0o700) == 0)
        writeFile(indexPath, [0x78])
        other.forgetLoginIndex()
        #expect(Self.exists(indexPath), "the index of a directory put in the root's place was removed")
        #expect(throws: MaildropError.self) { try other.openLockedRoot() }
    }
}
