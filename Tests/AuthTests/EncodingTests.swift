import Testing
@testable import Auth

@Suite struct EncodingTests {
    @Test func base64RoundTripsAndRejectsGarbage() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 5) }
            let text = ByteEncoding.base64(bytes)
            #expect(ByteEncoding.decodeBase64(text) == bytes)
        }
        #expect(ByteEncoding.base64(Array("pencil".utf8)) == "cGVuY2ls")
        #expect(ByteEncoding.decodeBase64("cGVuY2ls") == Array("pencil".utf8))
        #expect(ByteEncoding.decodeBase64("cGVuY2k") == Array("penci".utf8))
        #expect(ByteEncoding.decodeBase64("cGVu Y2ls") == nil)
        #expect(ByteEncoding.decodeBase64("cGVuY2l=") == nil)  // non-zero leftover bits
        #expect(ByteEncoding.decodeBase64("c") == nil)
        #expect(ByteEncoding.decodeBase64("c===") == nil)
    }

    @Test func hexIsCaseInsensitiveAndStrict() {
        #expect(ByteEncoding.hex([0x00, 0xab, 0xff]) == "00abff")
        #expect(ByteEncoding.decodeHex(Array("00ABff".utf8)) == [0x00, 0xab, 0xff])
        #expect(ByteEncoding.decodeHex(Array("0".utf8)) == nil)
        #expect(ByteEncoding.decodeHex(Array("zz".utf8)) == nil)
    }
}
