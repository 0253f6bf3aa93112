import Glibc
import Testing
@testable import Maildrop

@Suite struct CommitTests {
    @Test func deletesExactlyTheMarkedMessages() throws {
        let f = try Fixture()
        for i in 0..<5 { try f.writer.deliver(Array("m\(i)\n".utf8), fileName: "\(1_700_000_000 + i).M0P1.host") }
        let md = try Maildrop.open(path: f.root)
        // Mail that arrives during the session is not touched.
        try f.writer.deliver(Array("late\n".utf8), fileName: "1600000000.M0P1.late")
        let result = md.commit(deleting: [1, 3, 3, 99, -1])
        #expect(result == CommitResult(deleted: 2, failed: 0, firstError: nil))
        #expect(listNames(f.root + "/new") == [
            "1600000000.M0P1.late", "1700000000.M0P1.host", "1700000002.M0P1.host", "1700000004.M0P1.host",
        ])
    }

    @Test func renamedMessageIsFoundAndMissingOneCountsAsDeleted() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("a\n".utf8), fileName: "1700000000.M0P1.host")
        try f.writer.deliver(Array("b\n".utf8), fileName: "1700000001.M0P1.host")
        try f.writer.deliver(Array("c\n".utf8), fileName: "1700000002.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        rename(f.root + "/new/1700000000.M0P1.host", f.root + "/cur/1700000000.M0P1.host:2,S")
        unlink(f.root + "/new/1700000001.M0P1.host")
        let result = md.commit(deleting: [0, 1])
        #expect(result.deleted == 2)
        #expect(result.failed == 0)
        #expect(listNames(f.root + "/cur") == [])
        #expect(listNames(f.root + "/new") == ["1700000002.M0P1.host"])
    }

    @Test func failureIsCountedAndTheRestIsKept() throws {
        // Root ignores directory permissions, so the failure is made with a
        // directory where the file was: unlinkat(…, 0) fails with EISDIR.
        let f = try Fixture()
        try f.writer.deliver(Array("a\n".utf8), fileName: "1700000000.M0P1.host")
        try f.writer.deliver(Array("b\n".utf8), fileName: "1700000001.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        let victim = f.root + "/new/1700000000.M0P1.host"
        unlink(victim)
        mkdir(victim, 0o700)
        let result = md.commit(deleting: [0, 1])
        #expect(result.deleted == 1)
        #expect(result.failed == 1)
        if case .permanent(let text)? = result.firstError {
            #expect(text.contains("unlinkat"))
            #expect(text.contains(victim))
        } else {
            Issue.record("expected a permanent error, got \(String(describing: result.firstError))")
        }
        #expect(exists(victim))
        #expect(!exists(f.root + "/new/1700000001.M0P1.host"))
    }
}
