import Glibc
import Testing
@testable import Maildrop

/// The Maildir `S` flag for RFC 1725 `LAST` (Maildrop+Seen.swift, MessageInfo+Flags.swift).
@Suite struct SeenTests {
    @Test func nameWithSeenFlagKeepsAsciiOrderAndTheUniqueName() {
        #expect(Maildrop.nameWithSeenFlag("1700000000.M1P2.host") == "1700000000.M1P2.host:2,S")
        #expect(Maildrop.nameWithSeenFlag("1700000000.M1P2.host,S=10,W=12:2,") == "1700000000.M1P2.host,S=10,W=12:2,S")
        #expect(Maildrop.nameWithSeenFlag("x:2,FR") == "x:2,FRS")
        #expect(Maildrop.nameWithSeenFlag("x:2,DFT") == "x:2,DFST")
        #expect(Maildrop.nameWithSeenFlag("x:2,Fab") == "x:2,FSab")  // Dovecot keywords after
        #expect(Maildrop.nameWithSeenFlag("x:2,FS") == nil)
        #expect(Maildrop.nameWithSeenFlag("x:1,whatever") == nil)
        for name in ["a", "a:2,F", "a,S=3:2,T"] {
            let seen = Maildrop.nameWithSeenFlag(name) ?? ""
            #expect(MaildirName(seen).uniqueName == MaildirName(name).uniqueName)
        }
    }

    @Test func isSeenReadsTheFlag() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("a\n".utf8), fileName: "1700000000.M0P1.host")
        try f.writer.deliver(Array("b\n".utf8), fileName: "1700000001.M0P1.host:2,FS", into: .cur)
        try f.writer.deliver(Array("c\n".utf8), fileName: "1700000002.M0P1.host:2,F", into: .cur)
        try f.writer.deliver(Array("d\n".utf8), fileName: "1700000003.M0P1.host:1,S", into: .cur)
        let md = try Maildrop.open(path: f.root)
        defer { md.close() }
        #expect(md.messages.map(\.isSeen) == [false, true, false, false])
    }

    @Test func markSeenMovesNewToCurAndAddsTheFlagWithoutChangingUIDs() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("a\n".utf8), fileName: "1700000000.M0P1.host")
        try f.writer.deliver(Array("b\n".utf8), fileName: "1700000001.M0P1.host:2,F", into: .cur)
        try f.writer.deliver(Array("c\n".utf8), fileName: "1700000002.M0P1.host:2,S", into: .cur)
        try f.writer.deliver(Array("d\n".utf8), fileName: "1700000003.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        let uids = md.messages.map(\.uid)
        let result = md.markSeen([0, 1, 2, 2, 7, -1])
        md.close()
        #expect(result == SeenResult(marked: 3, failed: 0, firstError: nil))
        #expect(listNames(f.root + "/new") == ["1700000003.M0P1.host"])
        #expect(listNames(f.root + "/cur") == [
            "1700000000.M0P1.host:2,S", "1700000001.M0P1.host:2,FS", "1700000002.M0P1.host:2,S",
        ])
        let again = try Maildrop.open(path: f.root)
        defer { again.close() }
        #expect(again.messages.map(\.uid) == uids)
        #expect(again.messages.map(\.isSeen) == [true, true, true, false])
    }

    @Test func renamedByAnotherProgramIsFoundAndGoneIsSkipped() throws {
        let f = try Fixture()
        try f.writer.deliver(Array("a\n".utf8), fileName: "1700000000.M0P1.host")
        try f.writer.deliver(Array("b\n".utf8), fileName: "1700000001.M0P1.host")
        let md = try Maildrop.open(path: f.root)
        // An IMAP client flags the first meanwhile; the second is expunged.
        rename(f.root + "/new/1700000000.M0P1.host", f.root + "/cur/1700000000.M0P1.host:2,F")
        unlink(f.root + "/new/1700000001.M0P1.host")
        let result = md.markSeen([0, 1])
        md.close()
        #expect(result.marked == 1)
        #expect(result.failed == 0)
        #expect(listNames(f.root + "/cur") == ["1700000000.M0P1.host:2,FS"])
        #expect(listNames(f.root + "/new") == [])
    }
}

extension SeenResult {
    init(marked: Int, failed: Int, firstError: MaildropError?) {
        self.init()
        self.marked = marked
        self.failed = failed
        self.firstError = firstError
    }
}
