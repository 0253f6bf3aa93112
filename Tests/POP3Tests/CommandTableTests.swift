@testable import POP3
import Testing

/// The per-phase command tables as bit masks (issue 17, item 5): the same members as the
/// RFC 1939 / 2449 / 2595 / 5034 tables they replaced, and every keyword's bit in range.
@Suite struct CommandTableTests {
    /// The tables as the hashed `Set`s before the bit mask held them.
    static let authorization: Set<CommandKeyword> = [.user, .pass, .apop, .quit, .capa, .stls, .auth]
    static let transaction: Set<CommandKeyword> = [
        .stat, .list, .retr, .dele, .noop, .rset, .quit, .top, .uidl, .capa, .last,
    ]

    @Test func everyKeywordHasItsOwnBit() {
        // `CommandKeywordSet` shifts by the raw value with `&<<`: a 33rd keyword would alias.
        for keyword in CommandKeyword.allCases {
            #expect(keyword.rawValue < 32, "\(keyword)")
            let one: CommandKeywordSet = [keyword]
            #expect(one.bits.nonzeroBitCount == 1)
            for other in CommandKeyword.allCases {
                #expect(one.contains(other) == (other == keyword), "\(keyword) \(other)")
            }
        }
        let empty: CommandKeywordSet = []
        #expect(CommandKeyword.allCases.allSatisfy { !empty.contains($0) })
    }

    @Test func tablesHoldTheSameCommandsAsBefore() {
        for keyword in CommandKeyword.allCases {
            #expect(CommandKeyword.authorizationTable.contains(keyword) == Self.authorization.contains(keyword),
                    "AUTHORIZATION \(keyword)")
            #expect(CommandKeyword.transactionTable.contains(keyword) == Self.transaction.contains(keyword),
                    "TRANSACTION \(keyword)")
        }
    }

    /// Through the session: a keyword outside its phase's table is `-ERR command not valid in
    /// this state`, one inside is dispatched (some other reply), in both phases.
    @Test func sessionRefusesExactlyTheKeywordsOutsideItsTable() {
        func text(_ keyword: CommandKeyword) -> String {
            "\(keyword)".uppercased()
        }
        let refused = "-ERR command not valid in this state\r\n"
        // QUIT ends the session; LAST without `pop3_enable_last` is an unknown command in
        // either phase (LastTests has it with and without).
        for keyword in CommandKeyword.allCases where keyword != .quit && keyword != .last {
            var before = Harness()
            before.feed(text(keyword) + "\r\n")
            #expect((before.replies == refused) == !Self.authorization.contains(keyword), "AUTHORIZATION \(keyword)")
            var after = Harness()
            after.feed("USER alice\r\nPASS secret\r\n")
            let loggedIn = after.replies
            after.feed(text(keyword) + "\r\n")
            let reply = String(after.replies.dropFirst(loggedIn.count))
            #expect((reply == refused) == !Self.transaction.contains(keyword), "TRANSACTION \(keyword): \(reply)")
        }
    }
}
