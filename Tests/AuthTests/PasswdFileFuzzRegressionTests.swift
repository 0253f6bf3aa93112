import Testing
@testable import Auth

/// Inputs the passwd-file fuzz target's invariants (`Fuzz/`, fuzz-passwd) caught, as unit tests
/// named after the bug; each input is also in `Fuzz/Corpus/fuzz-passwd/regression-*`.
@Suite struct PasswdFileFuzzRegressionTests {
    /// `Fuzz/Corpus/fuzz-passwd/regression-colon-combining-mark`: the fields were split as Swift
    /// `Character`s, and a `:` followed by a combining mark (U+0301) is one `Character`, so it
    /// did not end the field: the user name `a:\u{301}b` held a colon (Dovecot, which splits at
    /// the octet, reads user `a`), and bob's password was `x:\u{301}1000` where Dovecot's is `x`.
    @Test func colonBeforeACombiningMarkEndsTheField() {
        let text = "a:\u{301}b:{PLAIN}x\nbob:{PLAIN}x:\u{301}1000:1000::/home/bob\n"
        let (file, _) = PasswdFile.parse(Array(text.utf8), path: "test")
        #expect(file.lookup("a:\u{301}b") == nil, "a user name with a colon")
        #expect(file.lookup("bob")?.secret == Array("x".utf8))
        #expect(file.lookup("bob")?.uid == "\u{301}1000")
        #expect(file.lookup("bob")?.home == "/home/bob")
    }

    /// Extra fields are separated by the space octet, as in Dovecot, whatever follows it.
    @Test func spaceBeforeACombiningMarkSeparatesExtraFields() {
        let text = "carol:{PLAIN}y:1:1::/h:/s:a=1 \u{301}b=2\n"
        let (file, _) = PasswdFile.parse(Array(text.utf8), path: "test")
        #expect(file.lookup("carol")?.extraFields == ["a=1", "\u{301}b=2"])
    }

    /// The `{SCHEME}` prefix is found by octet too: `}` followed by a combining mark is one
    /// `Character`, and a Character search called the prefix unterminated and the user
    /// unable to log in, where Dovecot reads scheme PLAIN and the password's octets.
    @Test func braceBeforeACombiningMarkEndsTheScheme() {
        let text = "dave:{PLAIN}\u{301}pw\n"
        let (file, diags) = PasswdFile.parse(Array(text.utf8), path: "test")
        #expect(diags.isEmpty, "\(diags)")
        #expect(file.lookup("dave")?.scheme == .plain)
        #expect(file.lookup("dave")?.secret == Array("\u{301}pw".utf8))
    }
}
