/// APOP (RFC 1939 §7): the client sends hex(MD5(timestamp || password)). Only
/// possible when the cleartext is stored (PLAIN); any other scheme is false.
/// `digestHex` is compared case-insensitively and in constant time.
public func apopDigestMatches(entry: UserEntry, timestamp: [UInt8], digestHex: [UInt8]) -> Bool {
    guard entry.hasPlainSecret, let client = ByteEncoding.decodeHex(digestHex), client.count == 16 else { return false }
    return Crypto.constantTimeEqual(Crypto.digest(.md5, timestamp, entry.secret), client)
}

public func apopDigestMatches(entry: UserEntry, timestamp: String, digestHex: String) -> Bool {
    apopDigestMatches(entry: entry, timestamp: Array(timestamp.utf8), digestHex: Array(digestHex.utf8))
}

/// CRAM-MD5 (RFC 2195).
public enum CramMD5 {
    /// A fresh challenge `<random.seconds@host>` (RFC 2195 §2: msg-id form,
    /// unique per exchange). nil only if the CSPRNG fails.
    public static func challenge(hostname: String, seconds: Int) -> [UInt8]? {
        guard let r = Crypto.randomBytes(8) else { return nil }
        var n: UInt64 = 0
        for b in r { n = n << 8 | UInt64(b) }
        return Array("<\(n).\(seconds)@\(hostname)>".utf8)
    }

    /// Splits the decoded client response `user SP hexdigest` at its last
    /// space (user names may not contain one, but be lenient about the name).
    public static func parseResponse(_ response: [UInt8]) -> (user: String, digestHex: [UInt8])? {
        guard let space = response.lastIndex(of: UInt8(ascii: " ")), space > 0,
              let user = String(validating: response[..<space], as: UTF8.self) else { return nil }
        let digest = Array(response[(space + 1)...])
        guard digest.count == 32 else { return nil }
        return (user, digest)
    }

    /// hex(HMAC-MD5(password, challenge)) == digestHex, for PLAIN secrets only.
    public static func digestMatches(entry: UserEntry, challenge: [UInt8], digestHex: [UInt8]) -> Bool {
        guard entry.hasPlainSecret, let client = ByteEncoding.decodeHex(digestHex), client.count == 16 else { return false }
        return Crypto.constantTimeEqual(Crypto.hmac(.md5, key: entry.secret, data: challenge), client)
    }
}
