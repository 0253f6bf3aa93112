import POP3
import Testing

/// RFC 1725 §5 `LAST` behind `pop3_enable_last` (Session+Last.swift).
@Suite struct LastTests {
    static func harness(enabled: Bool, lastSeen: Int = 0, maxBad: Int = SessionConfig.defaultMaxBadCommands) -> Harness {
        var config = Harness.config()
        config.lastEnabled = enabled
        config.maxBadCommands = maxBad
        var h = Harness(config: config)
        h.lastSeen = lastSeen
        return h
    }

    /// Replies after the login's two lines.
    static func afterLogin(_ h: Harness) -> String {
        let prefix = loginReply
        let text = h.replies
        return text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : "NO LOGIN: " + text
    }

    @Test func offLastIsAnUnknownCommandAndCounts() {
        var h = Self.harness(enabled: false)
        h.feed(login + "LAST\r\nlast\r\n")
        #expect(Self.afterLogin(h) == "-ERR unknown command\r\n-ERR unknown command\r\n")
        #expect(h.session.counters.badCommands == 2)
        #expect(h.session.lastCommand == nil)  // the metric's `unknown`, as before LAST existed
    }

    @Test func offLastReachesTheBadCommandLimit() {
        var h = Self.harness(enabled: false, maxBad: 2)
        h.feed(login + "LAST\r\nLAST\r\nNOOP\r\n")
        #expect(Self.afterLogin(h) == "-ERR unknown command\r\n-ERR too many bad commands, closing connection\r\n")
        #expect(h.closed)
    }

    @Test func onLastStartsAtZeroAndFollowsRetr() {
        var h = Self.harness(enabled: true)
        h.feed(login + "LAST\r\nRETR 2\r\n")
        h.out.bytes.removeAll()
        h.feed("LAST\r\nRETR 1\r\nLAST\r\n")
        #expect(h.out.text.hasPrefix("+OK 2\r\n+OK 34 octets\r\n"))
        #expect(h.out.text.hasSuffix(".\r\n+OK 2\r\n"))  // a lower RETR does not lower it
        #expect(h.session.lastCommand == .last)
        #expect(h.session.counters.badCommands == 0)
    }

    @Test func onLastStartsAtTheHighestSeenMessage() {
        var h = Self.harness(enabled: true, lastSeen: 2)
        h.feed(login + "LAST\r\n")
        #expect(Self.afterLogin(h) == "+OK 2\r\n")
        // A listing claiming more than there are messages is clamped.
        var big = Self.harness(enabled: true, lastSeen: 99)
        big.feed(login + "LAST\r\n")
        #expect(Self.afterLogin(big) == "+OK 3\r\n")
    }

    @Test func topDoesNotCountAsAccessAndDeleDoesNotLowerIt() {
        var h = Self.harness(enabled: true)
        h.feed(login + "TOP 3 0\r\n")
        h.out.bytes.removeAll()
        h.feed("LAST\r\nRETR 2\r\n")
        #expect(h.out.text.hasPrefix("+OK 0\r\n"))
        h.out.bytes.removeAll()
        h.feed("DELE 2\r\nLAST\r\n")
        #expect(h.out.text == "+OK message 2 deleted\r\n+OK 2\r\n")
    }

    /// RFC 1725's example: LAST 1, RETR 3, LAST 3, DELE 2, LAST 3, RSET, LAST 1.
    @Test func rsetPutsBackTheValueAtLogin() {
        var h = Self.harness(enabled: true, lastSeen: 1)
        h.feed(login + "LAST\r\nRETR 3\r\n")
        h.out.bytes.removeAll()
        h.feed("LAST\r\nDELE 2\r\nLAST\r\nRSET\r\nLAST\r\n")
        #expect(h.out.text == "+OK 3\r\n+OK message 2 deleted\r\n+OK 3\r\n+OK maildrop has 3 messages (117 octets)\r\n+OK 1\r\n")
    }

    @Test func aFailedRetrIsNoAccess() {
        var h = Self.harness(enabled: true)
        h.openOutcome = .gone
        h.feed(login + "RETR 3\r\nLAST\r\n")
        #expect(Self.afterLogin(h) == "-ERR [SYS/TEMP] message 3 was removed by another program\r\n+OK 0\r\n")
    }

    @Test func onLastInAuthorizationIsNotValidThere() {
        var h = Self.harness(enabled: true)
        h.feed("LAST\r\n")
        #expect(h.replies == "-ERR command not valid in this state\r\n")
        #expect(h.session.counters.badCommands == 1)
    }

    @Test func onLastTakesNoArguments() {
        var h = Self.harness(enabled: true)
        h.feed(login + "LAST 1\r\n")
        #expect(Self.afterLogin(h) == "-ERR this command takes no arguments\r\n")
        #expect(h.session.counters.badCommands == 1)
    }

    @Test func capaIsTheSameWithLastOnOrOff() {
        var on = Self.harness(enabled: true)
        var off = Self.harness(enabled: false)
        on.feed("CAPA\r\n" + login + "CAPA\r\n")
        off.feed("CAPA\r\n" + login + "CAPA\r\n")
        #expect(on.replies == off.replies)
        #expect(!on.replies.contains("LAST"))
    }

    /// What UPDATE marks seen: RETRed, not deleted, forgotten by RSET; nothing with LAST off.
    @Test func messagesToMarkSeen() {
        var h = Self.harness(enabled: true)
        h.feed(login + "RETR 1\r\nRETR 3\r\nTOP 2 1\r\n")
        #expect(h.session.messagesToMarkSeen == [0, 2])
        h.feed("DELE 3\r\n")
        #expect(h.session.messagesToMarkSeen == [0])
        h.feed("RSET\r\nRETR 2\r\n")
        #expect(h.session.messagesToMarkSeen == [1])
        h.feed("QUIT\r\n")
        #expect(h.deletions == [[]])
        #expect(h.session.messagesToMarkSeen == [1])

        var off = Self.harness(enabled: false)
        off.feed(login + "RETR 1\r\nQUIT\r\n")
        #expect(off.session.messagesToMarkSeen == [])
    }

    @Test func keywordParsesOnlyWhenItIsLast() {
        #expect(CommandKeyword.allCases.last == .last)
        #expect(CommandKeyword.allCases.count == 16)
    }
}
