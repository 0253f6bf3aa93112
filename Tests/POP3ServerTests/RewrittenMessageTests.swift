import Glibc
import Testing
@testable import POP3Server
import TestSupport

/// A message file another program rewrote in place after it was sized (issue 17 follow-up):
/// a longer one is refused before `+OK` (it would otherwise be sent cut at the old size, with a
/// terminator); a shorter one still drops the connection after `+OK` (`ReplyTruthTests`); and
/// either way a login index that vouched for the old size is removed, so the next login sizes
/// the file again instead of failing the same way forever.
@Suite(.serialized) struct RewrittenMessageTests {
    static func message(_ n: Int) -> [UInt8] { Array("Subject: m\(n)\r\n\r\nbody of message \(n)\r\n".utf8) }

    static func rewrite(_ path: String, _ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)  // in place: same inode, same name
        guard fd >= 0 else { return }
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[..<slash])
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    @Test(arguments: ["RETR 2", "TOP 2 0"])
    func longerFileIsAnErrAndTheSessionGoesOn(command: String) throws {
        let server = try ServerHarness()
        _ = try server.deliver("alice", Self.message(1))
        let second = try server.deliver("alice", Self.message(2))
        let c = try server.aliceLoggedIn()
        Self.rewrite(second, Array("Subject: m2\r\n\r\na different and much longer body than before\r\n".utf8))
        #expect(try c.command(command) == "-ERR [SYS/TEMP] message 2 cannot be read")
        #expect(try c.command("NOOP") == "+OK")
        #expect(try c.command("RETR 1").hasPrefix("+OK"))
        #expect(try c.rawBody() == Self.message(1))
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        #expect(waitFor { server.logs.contains("rewritten in place by another program") }, "\(server.logs.all)")
    }

    /// 300 messages: above `LoginIndex.minimumMessages`, so the maildrop keeps `pop3d.index`.
    @Test func shorterFileInAnIndexedMaildropIsSizedAgainAtTheNextLogin() throws {
        let server = try ServerHarness()
        var paths: [String] = []
        for n in 1...300 { paths.append(try server.deliver("alice", Self.message(n))) }
        let maildir = Self.parent(Self.parent(paths[0]))
        waitForFileSystemClock(maildir: maildir)
        let first = try server.aliceLoggedIn()  // sizes every file and writes the index
        #expect(try first.command("QUIT").hasPrefix("+OK"))
        #expect(try first.waitForClose())
        #expect(Self.exists(maildir + "/pop3d.index"))
        waitForFileSystemClock(maildir: maildir)

        let cut = Array("Subject: m5\r\n".utf8)
        Self.rewrite(paths[4], cut)
        let second = try server.aliceLoggedIn()
        #expect(try second.command("RETR 5") == "+OK \(Self.message(5).count) octets")
        #expect(try second.waitForClose())
        #expect(waitFor { !Self.exists(maildir + "/pop3d.index") }, "the index still vouches for the old size")

        let third = try server.aliceLoggedIn()
        #expect(try third.command("LIST 5") == "+OK 5 \(cut.count)")
        #expect(try third.command("RETR 5") == "+OK \(cut.count) octets")
        #expect(try third.rawBody() == cut)
        #expect(try third.command("QUIT").hasPrefix("+OK"))
    }
}
