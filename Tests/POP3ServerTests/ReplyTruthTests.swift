import Glibc
import Testing
@testable import POP3Server

/// Issue 10 item 2: `+OK` only once the resource is secured. RETR and TOP open the message
/// file before they answer: a message that another program removed, or that is no longer a
/// readable regular file, gets `-ERR [SYS/TEMP]`, the session goes on, and the DELEs given
/// before are committed at QUIT. A file cut short after its `+OK` drops the connection
/// (no terminator, no UPDATE).
@Suite(.serialized) struct ReplyTruthTests {
    /// What another program does to message 2's file between login and RETR/TOP.
    enum Damage: CaseIterable {
        case unlinked, directory, fifo

        func apply(_ path: String) {
            unlink(path)
            switch self {
            case .unlinked: break
            case .directory: mkdir(path, 0o700)
            case .fifo: mkfifo(path, 0o600)
            }
        }

        var reply: String {
            self == .unlinked
                ? "-ERR [SYS/TEMP] message 2 was removed by another program"
                : "-ERR [SYS/TEMP] message 2 cannot be read"
        }
    }

    static func message(_ n: Int) -> [UInt8] { Array("Subject: m\(n)\r\n\r\nbody of message \(n)\r\n".utf8) }

    static func login(_ server: ServerHarness) throws -> TestClient { try server.aliceLoggedIn() }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    @Test(arguments: Damage.allCases, ["RETR 2", "TOP 2 0"])
    func damagedMessageIsAnErrAndTheDelesBeforeAreCommitted(damage: Damage, command: String) throws {
        let server = try ServerHarness()
        let first = try server.deliver("alice", Self.message(1))
        let second = try server.deliver("alice", Self.message(2))
        let third = try server.deliver("alice", Self.message(3))
        let c = try Self.login(server)
        #expect(try c.command("DELE 1") == "+OK message 1 deleted")
        damage.apply(second)
        #expect(try c.command(command) == damage.reply)
        // The session goes on: other messages are still served, the drop is unchanged.
        #expect(try c.command("NOOP") == "+OK")
        #expect(try c.command("RETR 3").hasPrefix("+OK"))
        #expect(try c.rawBody() == Self.message(3))
        #expect(try c.command("QUIT").hasPrefix("+OK"))
        #expect(try c.waitForClose())
        // UPDATE ran: DELE 1 is committed; message 3 stays.
        #expect(!Self.exists(first), "DELE 1 was lost: \(first) is still there")
        #expect(Self.exists(third))
        #expect(waitFor { server.logs.contains("reason=client quit") }, "\(server.logs.all)")
    }

    /// A message found gone at RETR can still be DELE'd: UPDATE counts a file that is already
    /// gone as deleted, so QUIT's reply is `+OK` and the other DELEs are committed.
    @Test func goneMessageCanBeDeletedAndQuitStillSaysOk() throws {
        let server = try ServerHarness()
        let first = try server.deliver("alice", Self.message(1))
        let second = try server.deliver("alice", Self.message(2))
        let c = try Self.login(server)
        Damage.unlinked.apply(second)
        #expect(try c.command("RETR 2") == Damage.unlinked.reply)
        #expect(try c.command("DELE 2") == "+OK message 2 deleted")
        #expect(try c.command("DELE 1") == "+OK message 1 deleted")
        #expect(try c.command("QUIT") == "+OK POP3 server signing off (0 messages left)")
        #expect(!Self.exists(first))
    }

    /// After `+OK n octets` the file is cut short by another program: fewer octets than
    /// announced can be read. The connection is dropped without a terminator (the client
    /// sees an incomplete reply, not a different message), and no UPDATE happens.
    @Test func messageTruncatedAfterItsOkDropsTheConnection() throws {
        let server = try ServerHarness()
        let first = try server.deliver("alice", Self.message(1))
        var big = Array("Subject: big\r\n\r\n".utf8)
        while big.count < 20_000 { big += Array("a line of the message body\r\n".utf8) }
        let second = try server.deliver("alice", big)
        let c = try Self.login(server)
        #expect(try c.command("DELE 1").hasPrefix("+OK"))
        #expect(truncate(second, 100) == 0)
        #expect(try c.command("RETR 2") == "+OK \(big.count) octets")
        #expect(try c.waitForClose())
        let received = Array(c.leftover.utf8)
        #expect(received.count < big.count, "\(received.count) octets after the +OK")
        #expect(!c.leftover.hasSuffix("\r\n.\r\n"), "a terminator ended a message cut short")
        #expect(Self.exists(first), "UPDATE ran after a failed stream")
        #expect(waitFor { server.logs.contains("reason=message unreadable") }, "\(server.logs.all)")
        #expect(server.logs.contains("ended before its listed size"))
    }
}

/// The session summary line's `reason=` for each way a session ends that a client can
/// cause (EndReason in POP3Connection+Closing.swift; operators and e2e tests grep these).
@Suite(.serialized) struct EndReasonTests {
    @Test func summaryLineNamesWhySessionsEnded() throws {
        let server = try ServerHarness { config, _ in
            config.maxBadCommands = 3
            config.idleTimeoutSeconds = 1
        }
        let quitter = try server.client()
        #expect(try quitter.line().hasPrefix("+OK"))
        #expect(try quitter.command("QUIT").hasPrefix("+OK"))
        #expect(try quitter.waitForClose())
        #expect(waitFor { server.logs.contains("reason=client quit") }, "\(server.logs.all)")

        let bad = try server.client()
        #expect(try bad.line().hasPrefix("+OK"))
        for _ in 0..<2 { #expect(try bad.command("XYZZY").hasPrefix("-ERR")) }
        #expect(try bad.command("XYZZY") == "-ERR too many bad commands, closing connection")
        #expect(try bad.waitForClose())
        #expect(waitFor { server.logs.contains("reason=too many bad commands") }, "\(server.logs.all)")

        let leaver = try server.client()
        #expect(try leaver.line().hasPrefix("+OK"))
        leaver.close()
        #expect(waitFor { server.logs.contains("reason=client disconnected") }, "\(server.logs.all)")

        let idle = try server.client()
        #expect(try idle.line().hasPrefix("+OK"))
        #expect(try idle.line() == "-ERR autologout: idle timeout")
        #expect(try idle.waitForClose())
        #expect(waitFor { server.logs.contains("reason=idle timeout") }, "\(server.logs.all)")
        #expect(try waitFor { try server.counts() == .zero })
    }
}
