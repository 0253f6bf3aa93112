import Testing
@testable import Maildrop

@Suite struct MailLocationTests {
    @Test func substitutesUserLocalPartDomainAndHome() throws {
        let fixed = try MailLocation(template: "maildir:/srv/mail/%u/Maildir")
        #expect(try fixed.path(user: "alice", home: nil) == "/srv/mail/alice/Maildir")
        let split = try MailLocation(template: "maildir:/srv/mail/%d/%n")
        #expect(try split.path(user: "bob@example.org", home: nil) == "/srv/mail/example.org/bob")
        let home = try MailLocation(template: "maildir:%h/Maildir")
        #expect(try home.path(user: "carol", home: "/home/carol") == "/home/carol/Maildir")
        let tilde = try MailLocation(template: "maildir:~/Mail")
        #expect(try tilde.path(user: "carol", home: "/home/carol") == "/home/carol/Mail")
        let percent = try MailLocation(template: "maildir:/srv/100%%/%u")
        #expect(try percent.path(user: "x", home: nil) == "/srv/100%/x")
        // %n without a domain is the whole name (Dovecot).
        #expect(try split.path(user: "bob@ex", home: nil) == "/srv/mail/ex/bob")
        let local = try MailLocation(template: "maildir:/m/%n")
        #expect(try local.path(user: "dave", home: nil) == "/m/dave")
    }

    @Test func rejectsNamesThatEscape() throws {
        let loc = try MailLocation(template: "maildir:/srv/mail/%u/Maildir")
        for bad in ["", "..", ".", "../etc", "a/b", "/abs", "a..b", "nul\0x", "tab\tx", "new\nline", "del\u{7F}",
                    String(repeating: "a", count: 256)] {
            #expect(throws: MaildropError.invalidUser) { try loc.path(user: bad, home: nil) }
        }
        let split = try MailLocation(template: "maildir:/srv/%d/%n")
        #expect(throws: MaildropError.invalidUser) { try split.path(user: "nodomain", home: nil) }
        #expect(throws: MaildropError.invalidUser) { try split.path(user: "@example.org", home: nil) }
        #expect(throws: MaildropError.invalidUser) { try split.path(user: "x@.", home: nil) }
    }

    @Test func homeMustBeAbsolute() throws {
        let loc = try MailLocation(template: "maildir:%h/Maildir")
        #expect(throws: MaildropError.self) { try loc.path(user: "a", home: nil) }
        #expect(throws: MaildropError.self) { try loc.path(user: "a", home: "relative") }
    }

    @Test func badTemplatesAreRejected() {
        for bad in ["mbox:/var/mail/%u", "/srv/%u", "maildir:relative/%u", "maildir:/srv/%x", "maildir:/srv/%"] {
            #expect(throws: MaildropError.self) { try MailLocation(template: bad) }
        }
    }
}
