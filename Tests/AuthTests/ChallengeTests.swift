import Digests
import Testing
@testable import Auth

@Suite struct ChallengeTests {
    let plain = UserEntry(user: "mrose", scheme: .plain, secret: Array("tanstaaf".utf8))

    @Test func apopVectorFromRFC1939() {
        let ts = "<1896.697170952@dbc.mtview.ca.us>"
        #expect(apopDigestMatches(entry: plain, timestamp: ts, digestHex: "c4c9334bac560ecc979e58001b3e22fb"))
        #expect(apopDigestMatches(entry: plain, timestamp: ts, digestHex: "C4C9334BAC560ECC979E58001B3E22FB"))
        #expect(!apopDigestMatches(entry: plain, timestamp: ts, digestHex: "c4c9334bac560ecc979e58001b3e22fc"))
        #expect(!apopDigestMatches(entry: plain, timestamp: ts, digestHex: "c4c9"))
        #expect(!apopDigestMatches(entry: plain, timestamp: "<other@x>", digestHex: "c4c9334bac560ecc979e58001b3e22fb"))
        let hashed = UserEntry(user: "mrose", scheme: .sha256, secret: Digest.sha256.hash(Array("tanstaaf".utf8)))
        #expect(!apopDigestMatches(entry: hashed, timestamp: ts, digestHex: "c4c9334bac560ecc979e58001b3e22fb"))
    }

    @Test func cramMD5VectorFromRFC2195() {
        let tim = UserEntry(user: "tim", scheme: .plain, secret: Array("tanstaaftanstaaf".utf8))
        let challenge = Array("<1896.697170952@postoffice.reston.mci.net>".utf8)
        // RFC 2195 §2's example: the response `tim b913a602c7eda7a495b4e6e7334d3890` (its framing
        // is the session's, tested in POP3Tests).
        let digestHex = Array("b913a602c7eda7a495b4e6e7334d3890".utf8)
        #expect(CramMD5.digestMatches(entry: tim, challenge: challenge, digestHex: digestHex))
        #expect(CramMD5.digestMatches(entry: tim, challenge: challenge, digestHex: Array("B913A602C7EDA7A495B4E6E7334D3890".utf8)))
        #expect(!CramMD5.digestMatches(entry: tim, challenge: challenge + [0x20], digestHex: digestHex))
        #expect(!CramMD5.digestMatches(entry: tim, challenge: challenge, digestHex: Array("b913a602".utf8)))
        let hashed = UserEntry(user: "tim", scheme: .sha256, secret: Digest.sha256.hash(Array("tanstaaftanstaaf".utf8)))
        #expect(!CramMD5.digestMatches(entry: hashed, challenge: challenge, digestHex: digestHex))
    }
}
