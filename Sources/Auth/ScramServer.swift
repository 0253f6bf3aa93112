import ByteCodec
import Digests

/// Server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding.
///
/// A value type: the glue keeps it in the session, calls `receiveClientFirst`
/// on the loop (cheap), and runs `receiveClientFinal` on the worker pool (it
/// runs PBKDF2 when the user's secret is PLAIN, or as a decoy).
///
/// SASLprep (RFC 4013): not implemented. It is the identity on printable
/// ASCII, so ASCII names and passwords are exact; non-ASCII ones are used as
/// their UTF-8 bytes without normalization.
///
/// Unknown users, and users whose scheme cannot do SCRAM (crypt, SHA...), get a
/// decoy exchange: a per-user salt derived from a per-process secret (stable,
/// like a real stored salt), the same iteration count as PLAIN users, PBKDF2
/// work at the end, and the same `e=invalid-proof` reply as a wrong password.
public struct ScramServer: Sendable {
    /// Longest client message accepted (RFC 5802 sets none; a name, a nonce and
    /// a proof fit easily).
    public static let maxMessageLength = 2048
    /// Bytes of randomness in the server nonce.
    public static let serverNonceLength = 18

    /// Why an exchange stops (the glue answers `-ERR` and ends the AUTH): `tooLong` over
    /// `maxMessageLength`; `malformed` not RFC 5802 §7 syntax; `channelBindingNotSupported` a `p=`
    /// flag or a client-final `c=` that differs from the GS2 header; `unsupportedExtension` an `m=`
    /// attribute; `authzidNotAllowed` an authzid other than the user; `outOfOrder` a message in the
    /// wrong step; `nonceMismatch` a client-final nonce that is not the combined one; `randomFailed`
    /// no random octets for the server nonce.
    public enum Failure: Error, Sendable, Equatable {
        case tooLong, malformed, channelBindingNotSupported, unsupportedExtension, authzidNotAllowed
        case outOfOrder, nonceMismatch, randomFailed
    }

    /// The outcome of a well-formed client-final-message (RFC 5802 §3, §7).
    public struct Final: Sendable {
        /// True when the proof matched: authenticate as `entry`.
        public var verified: Bool
        /// `v=...` on success, `e=...` otherwise (RFC 5802 §7 server-final-message).
        public var serverFinal: [UInt8]
        /// The user to log in as when `verified`; nil for a wrong proof or a decoy exchange.
        public var entry: UserEntry?
    }

    enum Keys: Sendable {
        case stored(storedKey: [UInt8], serverKey: [UInt8])
        case derive(password: [UInt8])
        case decoy
    }

    struct Exchange: Sendable {
        var username: String
        var entry: UserEntry?
        var gs2Header: [UInt8]
        var clientFirstBare: [UInt8]
        var serverFirst: [UInt8]
        var nonce: [UInt8]
        var salt: [UInt8]
        var iterations: Int
        var keys: Keys
    }

    private let iterations: Int
    private let fixedServerNonce: [UInt8]?
    private(set) var exchange: Exchange?

    /// `iterations` is used for PLAIN users and decoys (Dovecot's default 4096).
    /// `serverNonce` is for test vectors only; nil draws a random one.
    public init(iterations: Int = HashDefaults.scramIterations, serverNonce: [UInt8]? = nil) {
        self.iterations = max(1, min(iterations, ScramSecret.maxIterations))
        self.fixedServerNonce = serverNonce
    }

    /// The authentication identity from client-first, once parsed.
    public var username: String? { exchange?.username }

    /// The authentication identity (`n=`) of a client-first-message, or nil when the message
    /// is too long or malformed: lets the glue look the user up (asynchronously, SQL) before
    /// `receiveClientFirst`, which then gets the looked-up entry.
    public static func authenticationIdentity(_ message: [UInt8]) -> String? {
        guard message.count <= maxMessageLength, case .success(let parsed) = ClientFirst.parse(message) else { return nil }
        return parsed.username
    }

    /// Parses client-first-message and returns server-first-message.
    public mutating func receiveClientFirst(_ message: [UInt8], lookup: (String) -> UserEntry?) -> Result<[UInt8], Failure> {
        guard exchange == nil else { return .failure(.outOfOrder) }
        guard message.count <= Self.maxMessageLength else { return .failure(.tooLong) }
        let parsed: ClientFirst
        switch ClientFirst.parse(message) {
        case .success(let p): parsed = p
        case .failure(let f): return .failure(f)
        }
        let serverNonce: [UInt8]
        if let fixed = fixedServerNonce {
            serverNonce = fixed
        } else {
            guard let r = Crypto.randomBytes(Self.serverNonceLength) else { return .failure(.randomFailed) }
            serverNonce = Array(Base64.encodedString(r).utf8)
        }
        let entry = lookup(parsed.username)
        let salt: [UInt8], iter: Int, keys: Keys
        if let entry, entry.scheme == .scramSHA256, let s = ScramSecret(entry.secret) {
            (salt, iter, keys) = (s.salt, s.iterations, .stored(storedKey: s.storedKey, serverKey: s.serverKey))
        } else if let entry, entry.scheme == .plain {
            (salt, iter, keys) = (Self.derivedSalt(parsed.username), iterations, .derive(password: entry.secret))
        } else {
            (salt, iter, keys) = (Self.derivedSalt(parsed.username), iterations, .decoy)
        }
        let nonce = parsed.clientNonce + serverNonce
        let serverFirst = Array("r=".utf8) + nonce + Array(",s=\(Base64.encodedString(salt)),i=\(iter)".utf8)
        exchange = Exchange(username: parsed.username, entry: keys.isDecoy ? nil : entry,
                            gs2Header: parsed.gs2Header, clientFirstBare: parsed.bare, serverFirst: serverFirst,
                            nonce: nonce, salt: salt, iterations: iter, keys: keys)
        return .success(serverFirst)
    }

    /// Checks client-final-message. Expensive for PLAIN users and decoys
    /// (PBKDF2): run it on the worker pool. A malformed message is a failure;
    /// a wrong proof is `verified == false` with `e=invalid-proof`.
    public func receiveClientFinal(_ message: [UInt8]) -> Result<Final, Failure> {
        guard let ex = exchange else { return .failure(.outOfOrder) }
        guard message.count <= Self.maxMessageLength else { return .failure(.tooLong) }
        guard let final = ClientFinal.parse(message) else { return .failure(.malformed) }
        guard final.channelBinding == ex.gs2Header else { return .failure(.channelBindingNotSupported) }
        guard Crypto.constantTimeEqual(final.nonce, ex.nonce) else { return .failure(.nonceMismatch) }

        let storedKey: [UInt8], serverKey: [UInt8]
        var real = true
        switch ex.keys {
        case .stored(let st, let sv): (storedKey, serverKey) = (st, sv)
        case .derive(let password):
            let k = ScramKeys(password: password, salt: ex.salt, iterations: ex.iterations)
            (storedKey, serverKey) = (k.storedKey, k.serverKey)
        case .decoy:
            // Same work as a PLAIN user, on keys that match no proof.
            let k = ScramKeys(password: Self.processSecret, salt: ex.salt, iterations: ex.iterations)
            (storedKey, serverKey) = (k.storedKey, k.serverKey)
            real = false
        }
        let authMessage = ex.clientFirstBare + [UInt8(ascii: ",")] + ex.serverFirst + [UInt8(ascii: ",")] + final.withoutProof
        let clientSignature = Digest.sha256.hmac(key: storedKey, data: authMessage)
        var ok = final.proof.count == clientSignature.count && clientSignature.count == 32
        var clientKey = [UInt8](repeating: 0, count: 32)
        if ok { for i in 0..<32 { clientKey[i] = final.proof[i] ^ clientSignature[i] } }
        ok = Crypto.constantTimeEqual(Digest.sha256.hash(clientKey), storedKey) && ok && real
        guard ok else {
            return .success(Final(verified: false, serverFinal: Array("e=invalid-proof".utf8), entry: nil))
        }
        let serverSignature = Digest.sha256.hmac(key: serverKey, data: authMessage)
        return .success(Final(verified: true, serverFinal: Array("v=\(Base64.encodedString(serverSignature))".utf8),
                              entry: ex.entry))
    }

    /// Random per process: decoy salts are stable for a user while the process
    /// lives, like a stored salt, yet cannot be predicted from outside.
    static let processSecret: [UInt8] = Crypto.randomBytes(32) ?? Array("pop3d-scram-decoy".utf8)

    static func derivedSalt(_ user: String) -> [UInt8] {
        Array(Digest.sha256.hmac(key: processSecret, data: Array(("scram-salt:" + user).utf8)).prefix(HashDefaults.saltLength))
    }
}

extension ScramServer.Keys {
    var isDecoy: Bool { if case .decoy = self { true } else { false } }
}
