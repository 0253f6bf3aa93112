import Testing
@testable import Maildrop

@Suite struct MaildirNameTests {
    @Test func parsesDovecotAndPostfixNames() {
        let d = MaildirName("1700000000.M123456P789.host,S=1234,W=1260:2,S")
        #expect(d.uniqueName == "1700000000.M123456P789.host")
        #expect(d.seconds == 1_700_000_000)
        #expect(d.microseconds == 123_456)
        #expect(d.sField == 1234)
        #expect(d.wField == 1260)
        let p = MaildirName("1700000001.V801I2c3M000042.mx.example.org")
        #expect(p.uniqueName == "1700000001.V801I2c3M000042.mx.example.org")
        #expect(p.microseconds == 42)
        #expect(p.wField == nil)
        let odd = MaildirName("nodigits.host:2,RS")
        #expect(odd.seconds == nil)
        #expect(odd.uniqueName == "nodigits.host")
        // Unknown ,X= fields stay part of the unique name.
        #expect(MaildirName("1.M1.h,Z=9,W=5:2,").uniqueName == "1.M1.h,Z=9")
    }

    @Test func uidIsStableAcrossFlagsAndFields() {
        let a = MaildirName("1700000000.M1P2.host,S=10,W=12")
        let b = MaildirName("1700000000.M1P2.host,S=10,W=12:2,RS")
        let c = MaildirName("1700000000.M1P2.host:2,")
        #expect(a.uid == "1700000000.M1P2.host")
        #expect(a.uid == b.uid)
        #expect(b.uid == c.uid)
    }

    @Test func longOrUnprintableNamesAreHashed() {
        let long = String(repeating: "x", count: 71)
        let uid = MaildirName(long).uid
        #expect(uid.utf8.count == 64)
        #expect(uid == SHA256.hex(Array(long.utf8)))
        #expect(MaildirName(String(repeating: "x", count: 70)).uid == String(repeating: "x", count: 70))
        let spaced = MaildirName("1700000000.M1 P2.host").uid
        #expect(spaced.utf8.count == 64)
        #expect(spaced.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E })
        #expect(MaildirName("1700000000.Mü.host").uid.utf8.count == 64)
    }

    @Test func sha256KnownVectors() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        #expect(SHA256.hex(Array(two.utf8)) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}
