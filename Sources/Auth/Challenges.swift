import ByteCodec
import Digests

/// APOP (RFC 1939 §7): the client sends hex(MD5(timestamp || password)). Only
/// possible when the cleartext is stored (PLAIN); any other scheme is false.
/// `digestHex` is compared case-insensitively and in constant time.
public func apopDigestMatches(entry: UserEntry, timestamp: [UInt8], digestHex: [UInt8]) -> Bool {
    guard entry.hasPlainSecret, let client = Hex.decode(digestHex), client.count == 16 else { return false }
    return Crypto.constantTimeEqual(Digest.md5.hash(timestamp, entry.secret), client)
}

/// `apopDigestMatches(entry:timestamp:digestHex:)` on the UTF-8 octets of `timestamp` (the
/// greeting's `<...>` msg-id, brackets included) and `digestHex` (32 hex digits, RFC 1939 §7).
public func apopDigestMatches(entry: UserEntry, timestamp: String, digestHex: String) -> Bool {
    apopDigestMatches(entry: entry, timestamp: Array(timestamp.utf8), digestHex: Array(digestHex.utf8))
}

/// CRAM-MD5 (RFC 2195): the server side's check. The challenge and the response's framing
/// (`user SP digest`) are the session's (`POP3.Session`, `Session+SASL.swift`).
public enum CramMD5 {
    /// hex(HMAC-MD5(password, challenge)) == digestHex, for PLAIN secrets only.
    public static func digestMatches(entry: UserEntry, challenge: [UInt8], digestHex: [UInt8]) -> Bool {
        guard entry.hasPlainSecret, let client = Hex.decode(digestHex), client.count == 16 else { return false }
        return Crypto.constantTimeEqual(Digest.md5.hmac(key: entry.secret, data: challenge), client)
    }
}
