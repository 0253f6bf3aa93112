import Dispatch
import Digests
import Synchronization
import Testing

/// `Digest.digestsEqual` (the shim's `cshim_digest_equal`, issue 17): H(a) == H(b) in one call,
/// what Auth's `{PLAIN}` check relies on. Equal inputs are equal, anything else is not (lengths,
/// a shared prefix, one octet, the empty input), for every algorithm, from several threads.
@Suite struct DigestEqualTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func equalInputsAreEqual() {
        for digest in Digest.allCases {
            #expect(digest.digestsEqual(Self.bytes("secret"), Self.bytes("secret")), "\(digest)")
            #expect(digest.digestsEqual([UInt8](), [UInt8]()), "\(digest): empty")
            let long = [UInt8](repeating: 0xA5, count: 100_000)
            #expect(digest.digestsEqual(long, long), "\(digest): long")
        }
    }

    @Test func differentInputsAreNotEqual() {
        for digest in Digest.allCases {
            #expect(!digest.digestsEqual(Self.bytes("secret"), Self.bytes("secreT")), "\(digest): last octet")
            #expect(!digest.digestsEqual(Self.bytes("secret"), Self.bytes("Secret")), "\(digest): first octet")
            #expect(!digest.digestsEqual(Self.bytes("secret"), Self.bytes("secret2")), "\(digest): a prefix")
            #expect(!digest.digestsEqual(Self.bytes("secret2"), Self.bytes("secret")), "\(digest): longer first")
            #expect(!digest.digestsEqual([UInt8](), Self.bytes("x")), "\(digest): empty and not")
            #expect(!digest.digestsEqual(Self.bytes("x"), [UInt8]()), "\(digest): not and empty")
            #expect(!digest.digestsEqual([0], [UInt8]()), "\(digest): a NUL octet is not nothing")
        }
    }

    /// The same answer as comparing the two `hash` outputs, slices included (the shim reads
    /// the slice's own octets, not its base array's).
    @Test func agreesWithComparingHashes() {
        let pairs: [(String, String)] = [("", ""), ("a", "a"), ("a", "b"), ("abc", "abcd"), ("pässword", "pässword")]
        for digest in Digest.allCases {
            for (x, y) in pairs {
                let a = Self.bytes(x), b = Self.bytes(y)
                #expect(digest.digestsEqual(a, b) == (digest.hash(a) == digest.hash(b)), "\(digest) \(x) \(y)")
            }
            let whole = Self.bytes("xxsecretyy")
            #expect(digest.digestsEqual(whole[2..<8], Self.bytes("secret")))
            #expect(!digest.digestsEqual(whole[2..<9], Self.bytes("secret")))
        }
    }

    /// Worker threads check passwords in parallel: every call has its own context, and the
    /// digest objects fetched once are shared read-only.
    @Test func reentrantAcrossThreads() {
        let wrong = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<500 {
                let a = Array("user\(t)-\(i)".utf8)
                let digest = Digest.allCases[(t + i) % Digest.allCases.count]
                if !digest.digestsEqual(a, a) || digest.digestsEqual(a, a + [0x21]) {
                    wrong.add(1, ordering: .relaxed)
                }
            }
        }
        #expect(wrong.load(ordering: .relaxed) == 0)
    }
}
