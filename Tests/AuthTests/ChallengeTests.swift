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
        let hashed = UserEntry(user: "mrose", scheme: .sha256, secret: Crypto.digest(.sha256, Array("tanstaaf".utf8)))
        #expect(!apopDigestMatches(entry: hashed, timestamp: ts, digestHex: "c4c9334bac560ecc979e58001b3e22fb"))
    }

    @Test func cramMD5VectorFromRFC2195() throws {
        let tim = UserEntry(user: "tim", scheme: .plain, secret: Array("tanstaaftanstaaf".utf8))
        let challenge = Array("<1896.697170952@postoffice.reston.mci.net>".utf8)
        let response = try #require(ByteEncoding.decodeBase64("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"))
        let parsed = try #require(CramMD5.parseResponse(response))
        #expect(parsed.user == "tim")
        #expect(CramMD5.digestMatches(entry: tim, challenge: challenge, digestHex: parsed.digestHex))
        #expect(!CramMD5.digestMatches(entry: tim, challenge: challenge + [0x20], digestHex: parsed.digestHex))
        #expect(CramMD5.parseResponse(Array("nospace".utf8)) == nil)
        #expect(CramMD5.parseResponse(Array("tim short".utf8)) == nil)
        let c1 = try #require(CramMD5.challenge(hostname: "mail.example", seconds: 5))
        let c2 = try #require(CramMD5.challenge(hostname: "mail.example", seconds: 5))
        #expect(c1 != c2)
        #expect(c1.first == UInt8(ascii: "<") && c1.last == UInt8(ascii: ">"))
    }
}
