import ByteCodec
import CShim

/// Message digests and HMAC from OpenSSL's EVP interface (libcrypto, through the shim's
/// `cshim_digest2`/`cshim_hmac`): the project's one implementation of them, shared by `Auth`
/// (password schemes, APOP, CRAM-MD5, SCRAM), `Maildrop` (SHA-256 UIDLs) and `pop3bench`
/// (APOP). Its own target because `Maildrop` and `pop3bench` may not import `Auth`.
///
/// Every function is reentrant (a fresh EVP context per call), so worker threads call them
/// in parallel. An empty result means OpenSSL failed: out of memory, or an algorithm the
/// OpenSSL configuration forbids (MD5 under a FIPS provider); callers treat it as "does not
/// match", never as a crash.
public enum Digest: Sendable, CaseIterable {
    /// MD5 (RFC 1321): APOP (RFC 1939 §7), CRAM-MD5's HMAC (RFC 2195), Dovecot's `{PLAIN-MD5}`.
    case md5
    /// SHA-1 (FIPS 180-4): Dovecot's `{SHA}`/`{SSHA}`.
    case sha1
    /// SHA-256 (FIPS 180-4): UIDLs of long Maildir names, SCRAM-SHA-256 (RFC 7677).
    case sha256
    /// SHA-512 (FIPS 180-4): Dovecot's `{SHA512}`/`{SSHA512}`.
    case sha512

    /// The algorithm's number in the shim (`CSHIM_MD_*`).
    package var shimValue: Int32 {
        switch self {
        case .md5: Int32(CSHIM_MD_MD5)
        case .sha1: Int32(CSHIM_MD_SHA1)
        case .sha256: Int32(CSHIM_MD_SHA256)
        case .sha512: Int32(CSHIM_MD_SHA512)
        }
    }

    /// Output size in octets: 16, 20, 32, 64.
    public var size: Int {
        switch self {
        case .md5: 16
        case .sha1: 20
        case .sha256: 32
        case .sha512: 64
        }
    }

    /// H(a || b), `size` octets; empty when OpenSSL failed. Two parts because every salted
    /// scheme hashes password || salt and APOP timestamp || password.
    public func hash(_ a: some ContiguousBytes, _ b: some ContiguousBytes = [UInt8]()) -> [UInt8] {
        Self.output { out in
            a.withUnsafeBytes { pa in
                b.withUnsafeBytes { pb in
                    cshim_digest2(shimValue, pa.baseAddress, pa.count, pb.baseAddress, pb.count, out)
                }
            }
        }
    }

    /// Lowercase hex of H(a || b): 2 × `size` characters; empty when OpenSSL failed.
    public func hexHash(_ a: some ContiguousBytes, _ b: some ContiguousBytes = [UInt8]()) -> String {
        Hex.encodedString(hash(a, b))
    }

    /// Whether H(a) == H(b), compared in constant time: neither the lengths of `a` and `b` nor
    /// a common prefix shows in the time it takes (the digests are equal-length and compared
    /// with OpenSSL's `CRYPTO_memcmp`). For a cleartext secret checked against a stored one
    /// (Dovecot's `{PLAIN}`). One shim call (`cshim_digest_equal`): both digests live in C
    /// stack buffers, no array per digest (issue 17). False when OpenSSL failed.
    public func digestsEqual(_ a: some ContiguousBytes, _ b: some ContiguousBytes) -> Bool {
        a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                cshim_digest_equal(shimValue, pa.baseAddress, pa.count, pb.baseAddress, pb.count) == 1
            }
        }
    }

    /// HMAC(key, data) (RFC 2104), `size` octets; empty when OpenSSL failed.
    public func hmac(key: some ContiguousBytes, data: some ContiguousBytes) -> [UInt8] {
        Self.output { out in
            key.withUnsafeBytes { pk in
                data.withUnsafeBytes { pd in
                    cshim_hmac(shimValue, pk.baseAddress, pk.count, pd.baseAddress, pd.count, out)
                }
            }
        }
    }

    /// Runs a shim call that writes at most `CSHIM_MD_MAX_SIZE` octets and returns how many
    /// (or -1); the octets written, or empty on failure.
    private static func output(_ call: (UnsafeMutablePointer<UInt8>?) -> Int32) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(CSHIM_MD_MAX_SIZE))
        let n = out.withUnsafeMutableBufferPointer { call($0.baseAddress) }
        guard n > 0, Int(n) <= out.count else { return [] }
        out.removeSubrange(Int(n)...)
        return out
    }
}

/// Byte containers the digest and crypto wrappers read without copying.
public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
