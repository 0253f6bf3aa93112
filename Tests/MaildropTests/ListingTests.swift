import Glibc
import Testing
@testable import Maildrop
import TestSupport

@Suite struct ListingTests {
    @Test func ordersByDeliveryTimeThenMicrosecondsThenName() throws {
        var f = try Fixture()
        let w = f.writer
        try w.deliver(Array("c".utf8), fileName: "1700000002.M5P1.host")
        try w.deliver(Array("a".utf8), fileName: "1700000001.M900P1.host:2,S", into: .cur)
        try w.deliver(Array("b".utf8), fileName: "1700000001.M1000P1.host")
        try w.deliver(Array("e".utf8), fileName: "1700000002.M5P2.host,S=1,W=3:2,")
        // Seconds compare numerically, not as text.
        try w.deliver(Array("0".utf8), fileName: "999999999.M1P1.host")
        _ = f.writer.makeUniqueName()
        let md = try Maildrop.open(path: f.root)
        #expect(md.messages.map(\.uniqueName) == [
            "999999999.M1P1.host", "1700000001.M900P1.host", "1700000001.M1000P1.host",
            "1700000002.M5P1.host", "1700000002.M5P2.host",
        ])
        #expect(md.count == 5)
        #expect(md.uid(1) == "1700000001.M900P1.host")
    }

    @Test func ignoresDotFilesTmpSubfoldersAndDirectories() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("x\n".utf8), fileName: "1700000000.M1P1.host")
        writeFile(f.root + "/new/.hidden", Array("no".utf8))
        writeFile(f.root + "/tmp/1700000000.M2P1.host", Array("partial".utf8))
        mkdir(f.root + "/cur/subdir", 0o700)
        _ = try MaildirWriter(root: f.root + "/.Sent")
        writeFile(f.root + "/.Sent/cur/1600000000.M1P1.host:2,S", Array("sent".utf8))
        let md = try Maildrop.open(path: f.root)
        #expect(md.messages.map(\.uniqueName) == ["1700000000.M1P1.host"])
    }

    @Test func createsMissingMaildirWithSubdirectories() throws {
        let t = TempDirectory(prefix: "maildrop-test")
        let root = t.path + "/alice/Maildir"
        let md = try Maildrop.open(path: root)
        #expect(md.count == 0)
        for sub in ["new", "cur", "tmp"] { #expect(exists(root + "/" + sub)) }
        md.close()
        #expect(throws: MaildropError.self) { try Maildrop.open(path: t.path + "/bob/Maildir", createIfMissing: false) }
        #expect(!exists(t.path + "/bob"))
    }

    @Test func notADirectoryIsPermanent() throws {
        let t = TempDirectory(prefix: "maildrop-test")
        writeFile(t.path + "/file", [1])
        do {
            _ = try Maildrop.open(path: t.path + "/file", createIfMissing: false)
            Issue.record("opened a file as a Maildir")
        } catch {
            guard case .permanent(let text) = error else { Issue.record("got \(error)"); return }
            #expect(text.contains(t.path + "/file"))
        }
        #expect(throws: MaildropError.self) { try Maildrop.open(path: "relative/path") }
    }
}
