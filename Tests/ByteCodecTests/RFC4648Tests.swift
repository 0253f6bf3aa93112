import ByteCodec
import Testing

/// RFC 4648 §10's test vectors and the strictness both decoders keep: the SASL one
/// (`.required`, formerly `POP3.Base64`) and the stored-secret one (`.optional`, formerly
/// `Auth.ByteEncoding`), which are now one decoder with one switch.
@Suite struct RFC4648Tests {
    static let base64Vectors: [(String, String)] = [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
    ]

    @Test func base64VectorsOfSection10() {
        for (plain, encoded) in Self.base64Vectors {
            #expect(Base64.encodedString(Array(plain.utf8)) == encoded)
            #expect(Base64.encode(Array(plain.utf8)) == Array(encoded.utf8))
            #expect(Base64.decode(encoded) == Array(plain.utf8))
            #expect(Base64.decode(encoded, padding: .optional) == Array(plain.utf8))
            // Without its padding: only the lenient decoder accepts it.
            let bare = String(encoded.prefix(while: { $0 != "=" }))
            #expect(Base64.decode(bare, padding: .optional) == Array(plain.utf8))
            if bare != encoded { #expect(Base64.decode(bare) == nil) }
        }
    }

    @Test func base64DecodesFromEveryContainer() {
        let text = Array("xZm9vYmFy".utf8)
        #expect(Base64.decode(text[1...]) == Array("foobar".utf8))
        #expect(text.withUnsafeBytes { Base64.decode(UnsafeRawBufferPointer(rebasing: $0[1...])) } == Array("foobar".utf8))
        #expect(Base64.decode(AnyCollection(text[1...])) == Array("foobar".utf8))
    }

    @Test(arguments: ["=AAA", "AAA=BBBB", "Zm9", "Zm9v\r\n", "Zm 9", "Zh==", "Zm9=", "Zg=A", "Zm9v====", "Z\u{0}9v",
                      "Zg===", "====", "Zm9v-_", "Zm9vYmF\u{FF}"])
    func base64RejectsMalformed(_ encoded: String) {
        #expect(Base64.decode(encoded) == nil)
        #expect(Base64.decode(encoded, padding: .optional) == nil)
    }

    /// With a length that is a multiple of 4 the two paddings accept the same texts with the
    /// same meaning: every text up to 8 characters over an alphabet of a zero sextet, a full
    /// one, one with only high bits, and the pad.
    @Test func paddingModesAgreeOnWholeQuartets() {
        let alphabet = Array("A/Q=".utf8)
        var texts: [[UInt8]] = [[]]
        var checked = 0
        var disagreeing: [String] = []
        for _ in 0..<8 {
            texts = texts.flatMap { t in alphabet.map { t + [$0] } }
            for t in texts where t.count % 4 == 0 {
                if Base64.decode(t) != Base64.decode(t, padding: .optional) { disagreeing.append(String(decoding: t, as: UTF8.self)) }
                checked += 1
            }
        }
        #expect(checked == 256 + 65_536)
        #expect(disagreeing.isEmpty, "\(disagreeing.prefix(10))")
    }

    @Test func base64RoundTripsEveryLengthAndOctet() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        let every = (0...255).map { UInt8($0) }
        #expect(Base64.decode(Base64.encode(every)) == every)
    }

    @Test func hexVectorsOfSection10() {
        let vectors = [("", ""), ("f", "66"), ("fo", "666f"), ("foo", "666f6f"), ("foobar", "666f6f626172")]
        for (plain, encoded) in vectors {
            #expect(Hex.encodedString(Array(plain.utf8)) == encoded)
            #expect(Hex.decode(encoded) == Array(plain.utf8))
            #expect(Hex.decode(encoded.uppercased()) == Array(plain.utf8))
        }
        #expect(Hex.decode("6") == nil)
        #expect(Hex.decode("6g") == nil)
        #expect(Hex.decode(" 66") == nil)
    }
}
