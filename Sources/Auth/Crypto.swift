import CShim

/// Thin Swift face of the OpenSSL/libxcrypt wrappers in `CShim/auth.c`.
/// Every function is reentrant so the worker threads can call them in parallel.
enum Crypto {
    enum Digest: Int32, Sendable {
        case md5 = 0, sha1 = 1, sha256 = 2, sha512 = 3

        var size: Int {
            switch self {
            case .md5: 16
            case .sha1: 20
            case .sha256: 32
            case .sha512: 64
            }
        }
    }

    /// H(a || b). An empty result means OpenSSL failed (out of memory); callers
    /// treat it as "does not match", never as a crash.
    static func digest(_ md: Digest, _ a: some ContiguousBytes, _ b: some ContiguousBytes = [UInt8]()) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(CSHIM_MD_MAX_SIZE))
        let n = a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                out.withUnsafeMutableBufferPointer { po in
                    cshim_digest2(md.rawValue, pa.baseAddress, pa.count, pb.baseAddress, pb.count, po.baseAddress)
                }
            }
        }
        guard n > 0 else { return [] }
        out.removeSubrange(Int(n)...)
        return out
    }

    static func hmac(_ md: Digest, key: some ContiguousBytes, data: some ContiguousBytes) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(CSHIM_MD_MAX_SIZE))
        let n = key.withUnsafeBytes { pk in
            data.withUnsafeBytes { pd in
                out.withUnsafeMutableBufferPointer { po in
                    cshim_hmac(md.rawValue, pk.baseAddress, pk.count, pd.baseAddress, pd.count, po.baseAddress)
                }
            }
        }
        guard n > 0 else { return [] }
        out.removeSubrange(Int(n)...)
        return out
    }

    static func pbkdf2(_ md: Digest, password: some ContiguousBytes, salt: some ContiguousBytes,
                       iterations: Int, length: Int) -> [UInt8] {
        guard iterations > 0, iterations <= Int(Int32.max), length > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: length)
        let ok = password.withUnsafeBytes { pp in
            salt.withUnsafeBytes { ps in
                out.withUnsafeMutableBufferPointer { po in
                    cshim_pbkdf2(md.rawValue, pp.baseAddress, pp.count, ps.baseAddress, ps.count,
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

/// Byte containers the crypto wrappers accept without copying.
protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
