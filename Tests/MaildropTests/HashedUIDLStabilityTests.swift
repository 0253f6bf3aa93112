import Testing
@testable import Maildrop

/// Issue 16 moved the SHA-256 behind UIDLs from a hand-written digest to OpenSSL. A UIDL is what
/// a leave-on-server client remembers, so the hashed ones must stay the very same octets: these
/// are pinned (computed independently, Python's hashlib), across the 55/56 and 119/120-octet
/// padding boundaries of the message schedule, for names with a space, a non-ASCII letter
/// and DEL.
@Suite struct HashedUIDLStabilityTests {
    static let pinned: [(String, String)] = [
        ("1700000000.M71P1.hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "6600d50e7c4179577532dd6e8a6e57b0264c8c9094f38847cf7871466dad65b8"),
        ("1700000000.M119P1.hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "bb4cb0aad852f8094e502e53744f2ff3094edcc1ad5ff5874583b86e4c9dbd30"),
        ("1700000000.M120P1.hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "5fe852730d54290aa2aaa72409a13d21917ead6b406dc66e11202a87b8fcaafb"),
        ("1700000000.M200P1.hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "fd2bbf9ea135f84325a8e7130bbc884c54f96f4b2bab135a030e594d9c5919ad"),
        ("1700000000.M1 P2.host", "fb7101d06f9c2efc4ce10ebeb2f0390ad3bf61bf8d59b6a238aa5a8c2320b592"),
        ("1700000000.Mü.host", "e37e9bedd629d851f607c6ecd25fcc33e20640db15ec51bb54a5c9b449ab1f25"),
        ("1700000000.M3P4.host\u{7F}", "bf0c6a859a8baa815c8060d2be2b0086f03d008738c590cd096e48a2859eef35"),
    ]

    /// Short enough to be UIDLs as they are, but repaired UIDLs (`UIDLRules.repaired`) hash
    /// whatever they get: the 55/56 and 63/64-octet boundaries of SHA-256's padding.
    static let pinnedRepairs: [(String, String)] = [
        ("1700000000.M55P1.hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "f7102d80378cb342a4f985032297122e22006687b73a89e37f920700bc688a3c"),
        ("1700000000.M56P1.hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "f40256f43d3ecbe68674c8f0d8088319d10922362edf33635d4dfb32b847c65c"),
        ("1700000000.M63P1.hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "e63cec0f6f36e515d461d598a870184a3f3691e9aa22cc7f47c840e0e7b44f63"),
        ("1700000000.M64P1.hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh", "0e98e96b6cf9bba14ad22082c537cbaaada6525a542c18f043f1e17d5f040ee4"),
    ]

    @Test func hashedUIDLsAreTheSameOctetsAsBefore() {
        for (name, uidl) in Self.pinned {
            #expect(MaildirName(name).uid == uidl, "\(name)")
            #expect(UIDLRules.repaired(name) == uidl, "\(name)")
        }
        for (uidl, repaired) in Self.pinnedRepairs {
            #expect(UIDLRules.repaired(uidl) == repaired, "\(uidl)")
        }
    }
}
