import Testing
import ByteCodec

/// The lenient form Auth reads stored secrets with (`Base64.Padding.optional`), as the
/// former `Auth.ByteEncoding` decoded them.
@Suite struct DovecotEncodingTests {
    @Test func base64RoundTripsAndRejectsGarbage() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 5) }
            let text = Base64.encodedString(bytes)
            #expect(Base64.decode(text, padding: .optional) == bytes)
        }
        #expect(Base64.encodedString(Array("pencil".utf8)) == "cGVuY2ls")
        #expect(Base64.decode("cGVuY2ls", padding: .optional) == Array("pencil".utf8))
        #expect(Base64.decode("cGVuY2k", padding: .optional) == Array("penci".utf8))
        #expect(Base64.decode("cGVu Y2ls", padding: .optional) == nil)
        #expect(Base64.decode("cGVuY2l=", padding: .optional) == nil)  // non-zero leftover bits
        #expect(Base64.decode("c", padding: .optional) == nil)
        #expect(Base64.decode("c===", padding: .optional) == nil)
    }

    @Test func hexIsCaseInsensitiveAndStrict() {
        #expect(Hex.encodedString([0x00, 0xab, 0xff]) == "00abff")
        #expect(Hex.decode(Array("00ABff".utf8)) == [0x00, 0xab, 0xff])
        #expect(Hex.decode(Array("0".utf8)) == nil)
        #expect(Hex.decode(Array("zz".utf8)) == nil)
    }
}
