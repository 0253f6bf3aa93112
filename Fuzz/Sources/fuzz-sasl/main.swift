@testable import Auth
import FuzzSupport
import Glibc
import ByteCodec
import Digests
import POP3

// The SASL codecs (RFC 5034 with RFC 4616 PLAIN, the LOGIN draft, RFC 2195 CRAM-MD5,
// RFC 5802/7677 SCRAM-SHA-256) and the encodings under them. Octet 0 picks the part, the
// rest is its input. Invariants, not just "no crash":
// - base64 (ByteCodec, padding required as SASL has it and optional as stored secrets have it): decode(encode(x)) == x; what
//   decodes re-encodes to the same text (one meaning per text); the two decoders agree
//   where both accept; hex likewise;
// - PLAIN, LOGIN and CRAM-MD5 as `Session` decodes them from the client's base64 lines give
//   exactly the credentials the message holds, or an undecodable login whose name is never
//   the password; the session's CRAM-MD5 split rebuilds the message;
// - SCRAM: `ScramServer` accepts a client-first only with a well-formed name and nonce and
//   answers `r=<client nonce><server nonce>,s=,i=`; a complete exchange computed by a real
//   client verifies exactly when the password is right (stored keys and PLAIN secrets; PBKDF2
//   cannot see trailing NULs, see below), and never for an unknown user; a fuzzed
//   client-final never verifies.

/// A client session through `AUTH`, returning the single `AuthRequest` it produced (or nil)
/// and the replies.
struct MiniSession {
    var session = Session(config: SessionConfig(
        apopTimestamp: "<1.2.3@fuzz.example>", plaintextAuthAllowed: true))
    var out = ByteArraySink()
    var request: AuthRequest?

    init() { session.start(out: &out) }

    mutating func line(_ text: [UInt8]) {
        check(request == nil, "a line after the request")
        check(text.count + 2 <= session.maxLineLength, "test line longer than the session takes")
        let action = text.withUnsafeBytes { session.handleLine($0, out: &out) }
        switch action {
        case .authenticate(let r): request = r
        case .none: break
        default: fail("AUTH gave \(action)")
        }
    }
}

enum Part: UInt8, CaseIterable {
    case base64POP3, encodingAuth, plain, login, cramMD5, scramParse, scramExchange
}

func fuzzBase64POP3(_ data: [UInt8]) {
    let encoded = Base64.encode(data)
    check(encoded.count == (data.count + 2) / 3 * 4, "encode length")
    check(Base64.decode(encoded) == data, "POP3 Base64 round trip of \(show(data))")
    if let decoded = Base64.decode(data) {
        check(Base64.encode(decoded) == data, "\(show(data)) decodes but is not canonical")
        check(Base64.decode(data, padding: .optional) == decoded, "Auth's decoder disagrees on \(show(data))")
    }
}

func fuzzEncodingAuth(_ data: [UInt8]) {
    let encoded = Array(Base64.encodedString(data).utf8)
    check(Base64.decode(encoded, padding: .optional) == data, "Auth base64 round trip of \(show(data))")
    check(Base64.decode(encoded) == data, "POP3 decoder refuses Auth's encoding of \(show(data))")
    if let decoded = Base64.decode(data) {
        // Padding is optional on input: the canonical text without it is the input without it.
        var canonical = Array(Base64.encodedString(decoded).utf8)
        while canonical.last == UInt8(ascii: "=") { canonical.removeLast() }
        var input = data
        while input.last == UInt8(ascii: "=") { input.removeLast() }
        check(canonical == input, "\(show(data)) decodes to \(show(decoded)), which encodes differently")
    }
    let hex = Array(Hex.encodedString(data).utf8)
    check(Hex.decode(hex) == data, "hex round trip")
    if let decoded = Hex.decode(data) {
        check(Hex.encodedString(decoded) == String(decoding: data, as: UTF8.self).lowercased(), "hex of \(show(data))")
    }
}

/// The three NUL-separated fields of PLAIN, when there are exactly three.
func plainFields(_ message: [UInt8]) -> [ArraySlice<UInt8>]? {
    let fields = message.split(separator: 0, omittingEmptySubsequences: false)
    return fields.count == 3 ? fields : nil
}

func fuzzPlain(_ data: [UInt8]) {
    let parsed = SASLPlain.parse(data)
    if let parsed {
        check(SASLPlain.encode(authzid: parsed.authzid, user: parsed.authcid, password: "") + parsed.password == data,
              "PLAIN fields do not rebuild the message")
        check(!parsed.authcid.isEmpty && !parsed.password.isEmpty, "PLAIN with an empty field accepted")
    }
    if let fields = plainFields(data) {
        check(SASLPlain.authcidOctets(data) == Array(fields[1]), "authcid octets")
    } else {
        check(parsed == nil, "PLAIN without exactly two NULs accepted")
        check(SASLPlain.authcidOctets(data).isEmpty, "a name taken from a message that is not three fields")
    }
    // Through the session: `AUTH PLAIN`, then the message as a continuation line.
    let text = Base64.encode(data)
    guard text.count + 2 <= LineParser.maxSASLResponseLength else { return }
    var mini = MiniSession()
    mini.line(Array("AUTH PLAIN".utf8))
    mini.line(text)  // an empty line is the base64 of an empty message
    guard let request = mini.request else { fail("PLAIN \(show(data)) gave no login attempt") }
    if let parsed, let user = SASLPlain.userToLogIn(parsed) {
        check(request == .password(user: user, password: parsed.password, mechanism: .plain), "PLAIN request \(request)")
    } else {
        check(request == .undecodable(user: SASLPlain.authcidOctets(data), mechanism: .plain), "PLAIN request \(request)")
    }
}

func fuzzLogin(_ reader: inout FuzzReader) {
    let initial = reader.byte() & 1 == 1
    let user = reader.field()
    let password = reader.rest()
    var mini = MiniSession()
    let userText = Base64.encode(user)
    if initial && !user.isEmpty && userText.count + 11 <= LineParser.maxCommandLength - 2 {
        // Some clients send the name as the initial response.
        mini.line(Array("AUTH LOGIN ".utf8) + userText)
    } else {
        mini.line(Array("AUTH LOGIN".utf8))
        mini.line(userText)  // an empty line is the base64 of an empty name
    }
    guard let name = String(validating: user, as: UTF8.self), !name.isEmpty else {
        check(mini.request == .undecodable(user: user, mechanism: .login),
              "LOGIN name \(show(user)): \(String(describing: mini.request))")
        return
    }
    check(mini.request == nil, "LOGIN asked nothing for the password")
    let passwordText = Base64.encode(password)
    guard passwordText.count + 2 <= LineParser.maxSASLResponseLength else { return }
    mini.line(passwordText)
    // An empty password cannot log in; the attempt names the user, never a password.
    let expected: AuthRequest = password.isEmpty
        ? .undecodable(user: user, mechanism: .login)
        : .password(user: name, password: password, mechanism: .login)
    check(mini.request == expected, "LOGIN \(show(user)) \(show(password)): \(String(describing: mini.request))")
}

func fuzzCramMD5(_ data: [UInt8]) {
    let text = Base64.encode(data)
    guard text.count + 2 <= LineParser.maxSASLResponseLength else { return }
    var mini = MiniSession()
    mini.line(Array("AUTH CRAM-MD5".utf8))
    mini.line(text)
    switch mini.request {
    case .cramMD5(let user, let digest, let challenge)?:
        // The session's split (name, last space, 32 hex digits) rebuilds the message.
        check(Array(user.utf8) + [0x20] == Array(data.prefix(data.count - 32)), "CRAM-MD5 name of \(show(data))")
        check(String(decoding: data.suffix(32), as: UTF8.self).lowercased() == digest, "CRAM-MD5 digest of \(show(data))")
        check(digest.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }, "digest \(digest)")
        check(challenge.hasPrefix("<") && challenge.hasSuffix(">"), "challenge \(challenge)")
    case .undecodable(let user, .cramMD5)?:
        // The name is what precedes the last space, never the digest part.
        if let space = data.lastIndex(of: 0x20) {
            check(user == Array(data[..<space]), "undecodable CRAM-MD5 name")
        } else {
            check(user.isEmpty, "undecodable CRAM-MD5 name without a space")
        }
    default:
        fail("CRAM-MD5 gave \(String(describing: mini.request))")
    }
}

enum Scram {
    static let serverNonce = Array("fuzzSERVERnonce".utf8)
    static let salt = Array("fuzz salt".utf8)
    static let iterations = 2
    static let password = Array("pencil".utf8)
    /// `user` stores SCRAM keys, `plain` a cleartext: both verify "pencil".
    static let stored: UserEntry = {
        let keys = ScramKeys(password: password, salt: salt, iterations: iterations)
        let text = ScramSecret(iterations: iterations, salt: salt, storedKey: keys.storedKey, serverKey: keys.serverKey).text
        return UserEntry(user: "user", scheme: .scramSHA256, secret: Array(text.utf8))
    }()
    static let plain = UserEntry(user: "plain", scheme: .plain, secret: password)

    static func lookup(_ name: String) -> UserEntry? {
        switch name {
        case "user": return stored
        case "plain": return plain
        default: return nil
        }
    }

    /// RFC 5802 §5.1 saslname.
    static func saslName(_ name: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for b in name {
            switch b {
            case UInt8(ascii: ","): out += Array("=2C".utf8)
            case UInt8(ascii: "="): out += Array("=3D".utf8)
            default: out.append(b)
            }
        }
        return out
    }
}

func fuzzScramParse(_ reader: inout FuzzReader) {
    let first = reader.field() + reader.field()
    let final = reader.rest()
    var server = ScramServer(iterations: Scram.iterations, serverNonce: Scram.serverNonce)
    check(!server.receiveClientFinal(final).isSuccess, "client-final before client-first")
    let identity = ScramServer.authenticationIdentity(first)
    switch server.receiveClientFirst(first, lookup: Scram.lookup) {
    case .success(let serverFirst):
        check(identity != nil && identity == server.username, "identity \(String(describing: identity)) vs \(String(describing: server.username))")
        check(serverFirst.starts(with: Array("r=".utf8)), "server-first \(show(serverFirst))")
        // The client nonce is the r= attribute of client-first-bare, then the server's.
        let attributes = first.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false)
        guard let r = attributes.first(where: { $0.starts(with: "r=".utf8) }) else { fail("no r= in \(show(first))") }
        check(serverFirst.starts(with: Array("r=".utf8) + r.dropFirst(2) + Scram.serverNonce), "nonce in \(show(serverFirst))")
        check(server.receiveClientFirst(first, lookup: Scram.lookup) == .failure(.outOfOrder), "second client-first")
        if case .success(let result) = server.receiveClientFinal(final) {
            // A fuzzer cannot compute an HMAC proof: no verification, and the answer says so.
            check(!result.verified && result.entry == nil, "fuzzed client-final \(show(final)) verified")
            check(result.serverFinal == Array("e=invalid-proof".utf8), "server-final \(show(result.serverFinal))")
        }
    case .failure:
        check(server.username == nil, "failed client-first kept a user")
    }
}

func fuzzScramExchange(_ reader: inout FuzzReader) {
    let options = reader.byte()
    let names: [[UInt8]] = [Array("user".utf8), Array("plain".utf8), Array("nobody".utf8)]
    let name = names[Int(options % 3)]
    var nonce = reader.field().filter { $0 >= 0x21 && $0 <= 0x7E && $0 != UInt8(ascii: ",") }
    if nonce.isEmpty { nonce = Array("n".utf8) }
    let gs2: [UInt8] = options & 0x04 != 0 ? Array("y,,".utf8) : (options & 0x08 != 0 ? Array("n,a=".utf8) + Scram.saslName(name) + [UInt8(ascii: ",")] : Array("n,,".utf8))
    let password = reader.rest()
    let bare = Array("n=".utf8) + Scram.saslName(name) + Array(",r=".utf8) + nonce
    var server = ScramServer(iterations: Scram.iterations, serverNonce: Scram.serverNonce)
    guard case .success(let serverFirst) = server.receiveClientFirst(gs2 + bare, lookup: Scram.lookup) else {
        fail("well-formed client-first refused: \(show(gs2 + bare))")
    }
    // The client's side of RFC 5802 §3 from the server-first's salt and iteration count.
    let attributes = serverFirst.split(separator: UInt8(ascii: ","))
    guard attributes.count == 3, let salt = Base64.decode(attributes[1].dropFirst(2), padding: .optional),
          let iterations = Int(String(decoding: attributes[2].dropFirst(2), as: UTF8.self)) else {
        fail("server-first \(show(serverFirst))")
    }
    let salted = Crypto.pbkdf2(.sha256, password: password, salt: salt, iterations: iterations, length: 32)
    let clientKey = Digest.sha256.hmac(key: salted, data: Array("Client Key".utf8))
    let storedKey = Digest.sha256.hash(clientKey)
    let withoutProof = Array("c=".utf8) + Array(Base64.encodedString(gs2).utf8) + Array(",r=".utf8) + nonce + Scram.serverNonce
    let authMessage = bare + [UInt8(ascii: ",")] + serverFirst + [UInt8(ascii: ",")] + withoutProof
    let signature = Digest.sha256.hmac(key: storedKey, data: authMessage)
    let proof = zip(clientKey, signature).map { $0 ^ $1 }
    let final = withoutProof + Array(",p=".utf8) + Array(Base64.encodedString(proof).utf8)
    guard case .success(let result) = server.receiveClientFinal(final) else { fail("well-formed client-final refused") }
    // HMAC pads a key shorter than SHA-256's 64-octet block with zeros (RFC 2104 §2), so PBKDF2
    // cannot tell "pencil" from "pencil" and NULs up to 64 octets; SASLprep (RFC 4013, which a
    // client applies) forbids NUL in a password. The fuzzer found this; it is SCRAM's, not ours.
    let samePassword = password == Scram.password
        || (password.count <= 64 && password.starts(with: Scram.password) && password.dropFirst(Scram.password.count).allSatisfy { $0 == 0 })
    let shouldVerify = samePassword && options % 3 != 2
    check(result.verified == shouldVerify, "user \(show(name)) password \(show(password)): verified \(result.verified)")
    if shouldVerify {
        let serverKey = Digest.sha256.hmac(key: salted, data: Array("Server Key".utf8))
        let expected = Array("v=".utf8) + Array(Base64.encodedString(Digest.sha256.hmac(key: serverKey, data: authMessage)).utf8)
        check(result.serverFinal == expected, "server signature \(show(result.serverFinal))")
        check(result.entry?.user == String(decoding: name, as: UTF8.self), "entry of another user")
    } else {
        check(result.serverFinal == Array("e=invalid-proof".utf8) && result.entry == nil, "failure answer \(show(result.serverFinal))")
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSASL(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var reader = FuzzReader(inputBytes(data, size))
    guard let part = Part(rawValue: reader.byte() % UInt8(Part.allCases.count)) else { return 0 }
    switch part {
    case .base64POP3: fuzzBase64POP3(reader.rest())
    case .encodingAuth: fuzzEncodingAuth(reader.rest())
    case .plain: fuzzPlain(reader.rest())
    case .login: fuzzLogin(&reader)
    case .cramMD5: fuzzCramMD5(reader.rest())
    case .scramParse: fuzzScramParse(&reader)
    case .scramExchange: fuzzScramExchange(&reader)
    }
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzSASL))
