import CShim
import Digests

/// Thin Swift face of the OpenSSL/libxcrypt wrappers in `CShim/auth.c` that only Auth uses
/// (digests and HMAC are the `Digests` target's, shared with Maildrop and pop3bench).
/// Every function is reentrant so the worker threads can call them in parallel.
enum Crypto {
    static func pbkdf2(_ md: Digest, password: some ContiguousBytes, salt: some ContiguousBytes,
                       iterations: Int, length: Int) -> [UInt8] {
        guard iterations > 0, iterations <= Int(Int32.max), length > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: length)
        let ok = password.withUnsafeBytes { pp in
            salt.withUnsafeBytes { ps in
                out.withUnsafeMutableBufferPointer { po in
                    cshim_pbkdf2(md.shimValue, pp.baseAddress, pp.count, ps.baseAddress, ps.count,
                                 UInt32(iterations), po.baseAddress, length)
                }
            }
        }
        return ok == 1 ? out : []
    }

    /// Bytes from OpenSSL's CSPRNG, or nil when it is not seeded (never on Linux
    /// with getrandom, but a missing salt must be an error, not zeros).
    static func randomBytes(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBytes { cshim_random_bytes($0.baseAddress, $0.count) }
        return ok == 1 ? out : nil
    }

    /// Constant-time equality. Unequal lengths return false at once: every
    /// caller compares fixed-size digests, so the length is no secret.
    static func constantTimeEqual(_ a: some ContiguousBytes, _ b: some ContiguousBytes) -> Bool {
        a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                pa.count == pb.count && cshim_const_time_equal(pa.baseAddress, pb.baseAddress, pa.count) == 1
            }
        }
    }

    /// libxcrypt `crypt_rn(phrase, setting)`; nil when the phrase contains NUL,
    /// the setting is not a hash libxcrypt knows, or it fails.
    static func crypt(phrase: [UInt8], setting: [UInt8]) -> [UInt8]? {
        guard !phrase.contains(0), !setting.contains(0) else { return nil }
        var out = [CChar](repeating: 0, count: Int(CSHIM_CRYPT_OUTPUT_SIZE))
        let n = (phrase + [0]).withUnsafeBufferPointer { pp in
            (setting + [0]).withUnsafeBufferPointer { ps in
                pp.withMemoryRebound(to: CChar.self) { cp in
                    ps.withMemoryRebound(to: CChar.self) { cs in
                        cshim_crypt(cp.baseAddress, cs.baseAddress, &out, out.count)
                    }
                }
            }
        }
        guard n > 0 else { return nil }
        return out[0..<Int(n)].map { UInt8(bitPattern: $0) }
    }

    /// libxcrypt `crypt_gensalt_rn(prefix, count)` with OS randomness; count 0
    /// means the algorithm's default cost.
    static func gensalt(prefix: String, count: UInt) -> [UInt8]? {
        var out = [CChar](repeating: 0, count: Int(CSHIM_CRYPT_GENSALT_OUTPUT_SIZE))
        let n = cshim_crypt_gensalt(prefix, count, &out, out.count)
        guard n > 0 else { return nil }
        return out[0..<Int(n)].map { UInt8(bitPattern: $0) }
    }
}
