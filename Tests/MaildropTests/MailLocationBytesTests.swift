import Testing
@testable import Maildrop

/// Issue 9, finding 8: user names are octets. `%n`/`%d` split at the first "@" octet, as
/// Dovecot does, even where Swift sees "@" plus a combining mark as one Character.
@Suite struct MailLocationBytesTests {
    @Test func splitsAtTheAtOctetEvenBeforeACombiningMark() throws {
        let local = try MailLocation(template: "maildir:/srv/mail/%n/Maildir")
        #expect(try local.path(user: "kim@\u{301}example", home: nil) == "/srv/mail/kim/Maildir")
        let domain = try MailLocation(template: "maildir:/srv/mail/%d/%n")
        #expect(try domain.path(user: "kim@\u{301}example", home: nil) == "/srv/mail/\u{301}example/kim")
    }

    @Test func canonicallyEquivalentNamesGiveDifferentPaths() throws {
        let location = try MailLocation(template: "maildir:/srv/mail/%u/Maildir")
        let composed = try location.path(user: "caf\u{E9}", home: nil)
        let decomposed = try location.path(user: "cafe\u{301}", home: nil)
        #expect(Array(composed.utf8) != Array(decomposed.utf8))
        #expect(Array(decomposed.utf8) == Array("/srv/mail/cafe\u{301}/Maildir".utf8))
    }
}
