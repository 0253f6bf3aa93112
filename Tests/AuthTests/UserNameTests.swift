import Testing
@testable import Auth

/// Finding 8 of issue 9: canonically equivalent user names are different users. Swift
/// `String`s compare by canonical equivalence, Dovecot compares names as bytes; so must we.
@Suite struct UserNameTests {
    static let kelvin = "\u{212A}im"  // KELVIN SIGN + "im": canonically equivalent to "Kim"
    static let composed = "caf\u{E9}"
    static let decomposed = "cafe\u{301}"

    @Test func theLookAlikeNamesAreEqualAsSwiftStrings() {
        // The premise of the finding: what a String-keyed table would do.
        #expect(Self.kelvin == "Kim")
        #expect(Self.composed == Self.decomposed)
        #expect(UserName(Self.kelvin) != UserName("Kim"))
        #expect(UserName(Self.composed) != UserName(Self.decomposed))
        #expect(UserName("Kim") == UserName(bytes: Array("Kim".utf8)))
    }

    @Test func kelvinSignListedFirstIsNotKim() throws {
        let text = "\(Self.kelvin):{PLAIN}attacker-pw::::::\nKim:{PLAIN}kims-pw::::::\n"
        let (file, diagnostics) = PasswdFile.parse(Array(text.utf8), path: "passwd")
        #expect(diagnostics.isEmpty, "two users, no duplicate: \(diagnostics)")
        #expect(file.count == 2)
        let kim = try #require(file.lookup("Kim"))
        #expect(Array(kim.user.utf8) == Array("Kim".utf8))
        #expect(kim.secret == Array("kims-pw".utf8))
        #expect(file.verifyOrDummy(user: "Kim", password: Array("attacker-pw".utf8)) == nil)
        #expect(file.verifyOrDummy(user: "Kim", password: Array("kims-pw".utf8)) != nil)
        let attacker = try #require(file.lookup(Self.kelvin))
        #expect(Array(attacker.user.utf8) == Array(Self.kelvin.utf8))
        #expect(file.verifyOrDummy(user: Self.kelvin, password: Array("kims-pw".utf8)) == nil)
    }

    @Test func composedAndDecomposedCafeAreTwoUsers() throws {
        let text = "\(Self.composed):{PLAIN}one::::::\n"
        let (file, _) = PasswdFile.parse(Array(text.utf8), path: "passwd")
        #expect(file.lookup(Self.composed) != nil)
        #expect(file.lookup(Self.decomposed) == nil)
        #expect(file.lookup(UserName(bytes: Array(Self.decomposed.utf8))) == nil)
        #expect(file.verifyOrDummy(user: Self.decomposed, password: Array("one".utf8)) == nil)
        let both = "\(Self.composed):{PLAIN}one::::::\n\(Self.decomposed):{PLAIN}two::::::\n"
        let (two, diagnostics) = PasswdFile.parse(Array(both.utf8), path: "passwd")
        #expect(diagnostics.isEmpty)
        #expect(two.lookup(Self.composed)?.secret == Array("one".utf8))
        #expect(two.lookup(Self.decomposed)?.secret == Array("two".utf8))
    }

    @Test func byteIdenticalDuplicateIsStillDiagnosed() {
        let text = "Kim:{PLAIN}a::::::\nKim:{PLAIN}b::::::\n"
        let (file, diagnostics) = PasswdFile.parse(Array(text.utf8), path: "passwd")
        #expect(file.count == 1)
        #expect(diagnostics.count == 1)
        #expect(file.lookup("Kim")?.secret == Array("a".utf8))
    }

    @Test func scramAuthzidIsComparedAsBytes() {
        // n=Kim but a=KELVIN-im: another identity, refused.
        let message = Array("n,a=\(Self.kelvin),n=Kim,r=abcdef".utf8)
        if case .failure(let f) = ClientFirst.parse(message) {
            #expect(f == .authzidNotAllowed)
        } else {
            Issue.record("a canonically equivalent authzid was accepted")
        }
    }
}
