import ByteCodec
import Digests
import Testing

/// The OpenSSL-backed digests against the published vectors: RFC 1321 §A.5 (MD5), FIPS 180-2
/// appendix examples (SHA-1, SHA-256, SHA-512), RFC 2202 (HMAC-MD5) and RFC 4231 (HMAC-SHA-256).
/// They replaced hand-written MD5 (pop3bench) and SHA-256 (Maildrop) whose outputs must stay
/// the same: the SHA-256 hex of a Maildir name is a client-visible UIDL.
@Suite struct DigestVectorTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test(arguments: [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
        (String(repeating: "1234567890", count: 8), "57edf4a22be3c955ac49da2e2107b67a"),
    ])
    func md5SuiteOfRFC1321(_ message: String, _ hex: String) {
        #expect(Digest.md5.hexHash(Self.bytes(message)) == hex)
        #expect(Digest.md5.hash(Self.bytes(message)).count == Digest.md5.size)
    }

    @Test func shaExamplesOfFIPS180() {
        let two = Self.bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
        #expect(Digest.sha1.hexHash(Self.bytes("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(Digest.sha1.hexHash(two) == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        #expect(Digest.sha256.hexHash(Self.bytes("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Digest.sha256.hexHash([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(Digest.sha256.hexHash(two) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(Digest.sha256.hexHash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        #expect(Digest.sha512.hexHash(Self.bytes("abc")) == "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea2"
                + "0a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
        for digest in Digest.allCases {
            #expect(digest.hash(Self.bytes("abc")).count == digest.size)
        }
    }

    /// H(a || b) is the digest of the concatenation, wherever the split falls (APOP hashes
    /// timestamp || password, the salted schemes password || salt).
    @Test func twoPartsHashAsTheirConcatenation() {
        let message = Self.bytes("<1896.697170952@dbc.mtview.ca.us>tanstaaf")
        for split in 0...message.count {
            #expect(Digest.md5.hash(message[..<split], message[split...]) == Digest.md5.hash(message))
        }
        // RFC 1939 §7's APOP example.
        #expect(Digest.md5.hexHash(message) == "c4c9334bac560ecc979e58001b3e22fb")
    }

    @Test func hmacVectorsOfRFC2202AndRFC4231() {
        let jefe = Self.bytes("Jefe"), question = Self.bytes("what do ya want for nothing?")
        #expect(Digest.md5.hmac(key: [UInt8](repeating: 0x0b, count: 16), data: Self.bytes("Hi There"))
                == Hex.decode("9294727a3638bb1c13f48ef8158bfc9d"))
        #expect(Digest.md5.hmac(key: jefe, data: question) == Hex.decode("750c783e6ab0b503eaa86e310a5db738"))
        #expect(Digest.sha256.hmac(key: [UInt8](repeating: 0x0b, count: 20), data: Self.bytes("Hi There"))
                == Hex.decode("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"))
        #expect(Digest.sha256.hmac(key: jefe, data: question)
                == Hex.decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
        // A key longer than the block is hashed first (RFC 4231 §4.7).
        #expect(Digest.sha256.hmac(key: [UInt8](repeating: 0xaa, count: 131),
                                   data: Self.bytes("Test Using Larger Than Block-Size Key - Hash Key First"))
                == Hex.decode("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"))
        // CRAM-MD5's example (RFC 2195 §2).
        #expect(Digest.md5.hmac(key: Self.bytes("tanstaaftanstaaf"),
                                data: Self.bytes("<1896.697170952@postoffice.reston.mci.net>"))
                == Hex.decode("b913a602c7eda7a495b4e6e7334d3890"))
        // Empty key and data are valid HMAC inputs, not an error.
        #expect(Digest.sha256.hmac(key: [UInt8](), data: [UInt8]()).count == 32)
    }
}
