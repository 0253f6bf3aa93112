import Digests

/// The digest of UIDLs that RFC 1939 §7 does not allow as they are (1–70 characters in
/// 0x21–0x7E): long or unprintable Maildir unique names (`MaildirName.uid`) and UIDLs that
/// break the rules (`UIDLRules.repaired`). FIPS 180-4 SHA-256 from OpenSSL (`Digests`), the
/// same on every host that shares the storage and the same octets as the hand-written
/// digest it replaced (issue 16): a client that leaves mail on the server compares them.
enum SHA256 {
    /// Lowercase hex of the digest: 64 characters in 0-9a-f.
    static func hex(_ message: [UInt8]) -> String {
        Digest.sha256.hexHash(message)
    }
}
