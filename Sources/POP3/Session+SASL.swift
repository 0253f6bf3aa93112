import ByteCodec

/// The AUTH command and its continuations (RFC 5034 §4). PLAIN, LOGIN and
/// CRAM-MD5 run here; SCRAM-SHA-256 is framed here and relayed to the glue.
extension Session {
    /// Server challenges of the LOGIN mechanism (draft-murchison-sasl-login).
    static let loginUserChallenge: StaticString = "+ VXNlcm5hbWU6\r\n"  // "Username:"
    static let loginPasswordChallenge: StaticString = "+ UGFzc3dvcmQ6\r\n"  // "Password:"

    /// Mechanisms offered right now: plaintext ones only where allowed (RFC 5034 §4).
    var offeredMechanisms: [SASLMechanism] {
        plaintextAllowed ? config.saslMechanisms : config.saslMechanisms.filter { !$0.isPlaintext }
    }

    mutating func auth(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        if arguments.count == 0 {
            // Not in RFC 5034, but old Outlook lists mechanisms with a bare AUTH.
            out.write("+OK\r\n")
            for mechanism in offeredMechanisms {
                out.write(string: mechanism.rawValue)
                out.write("\r\n")
            }
            out.write(".\r\n")
            return .none
        }
        guard arguments.count <= 2 else {
            return badCommand("-ERR usage: AUTH mechanism [initial-response]\r\n", out: &out)
        }
        let name = UnsafeRawBufferPointer(rebasing: line[arguments.first])
        guard let mechanism = config.saslMechanisms.first(where: { Self.equalsIgnoringCase(name, $0.rawValue) }) else {
            out.write("-ERR unsupported authentication mechanism\r\n")
            return .none
        }
        guard plaintextAllowed || !mechanism.isPlaintext else { return refusePlaintext(out: &out) }
        var initial: [UInt8]?
        if arguments.count == 2 {
            guard !mechanism.serverFirst else {
                // RFC 5034 §4: an initial response to a server-first mechanism is an error.
                out.write("-ERR this mechanism does not take an initial response\r\n")
                return .none
            }
            let text = UnsafeRawBufferPointer(rebasing: line[arguments.second])
            if text.count == 1 && text[0] == UInt8(ascii: "=") {
                initial = []  // RFC 5034 §4: "=" is a present, empty response.
            } else if let decoded = Base64.decode(text) {
                initial = decoded
            } else {
                return badCommand("-ERR invalid base64 in initial response\r\n", out: &out)
            }
        }
        pendingUser = nil
        switch mechanism {
        case .plain:
            if let initial { return finishPlain(initial, out: &out) }
            phase = .sasl(.plain)
            out.write("+ \r\n")
        case .login:
            // Some clients send the user name as the initial response.
            if let initial {
                guard let name = String(validating: initial, as: UTF8.self), !name.isEmpty else {
                    return beginLogin(.undecodable(user: initial, mechanism: .login))
                }
                phase = .sasl(.loginPassword(user: name))
                out.write(Self.loginPasswordChallenge)
            } else {
                phase = .sasl(.loginUser)
                out.write(Self.loginUserChallenge)
            }
        case .cramMD5:
            let challenge = cramChallenge()
            phase = .sasl(.cramMD5(challenge: challenge))
            out.write("+ ")
            out.write(bytes: Base64.encode(challenge.utf8))
            out.write("\r\n")
        case .scramSHA256:
            if let initial { return relayToGlue(mechanism, index: 0, message: initial) }
            phase = .sasl(.relay(mechanism, index: 0))
            out.write("+ \r\n")
        }
        return .none
    }

    /// A line read while inside AUTH: a client response (or `*`).
    mutating func handleSASLResponse(_ line: UnsafeRawBufferPointer, state: SASLState, out: inout some ReplySink) -> SessionAction {
        if line.count == 1 && line[0] == UInt8(ascii: "*") {
            // RFC 5034 §4: a cancelled exchange MUST get -ERR; not a failed login.
            phase = .authorization
            relay = nil
            out.write("-ERR authentication cancelled\r\n")
            return .none
        }
        guard let message = Base64.decode(line) else {
            phase = .authorization
            relay = nil
            return badCommand("-ERR invalid base64 in authentication response\r\n", out: &out)
        }
        switch state {
        case .plain:
            return finishPlain(message, out: &out)
        case .loginUser:
            guard let name = String(validating: message, as: UTF8.self), !name.isEmpty else {
                return beginLogin(.undecodable(user: message, mechanism: .login))
            }
            phase = .sasl(.loginPassword(user: name))
            out.write(Self.loginPasswordChallenge)
            return .none
        case .loginPassword(let name):
            guard !message.isEmpty else { return beginLogin(.undecodable(user: Array(name.utf8), mechanism: .login)) }
            return beginLogin(.password(user: name, password: message, mechanism: .login))
        case .cramMD5(let challenge):
            // RFC 2195 §2: "user SP digest", the digest 32 lowercase hex digits.
            guard let space = message.lastIndex(of: 0x20), space > 0,
                let name = String(validating: message[..<space], as: UTF8.self),
                let digest = message[(space + 1)...].withUnsafeBytes({ Self.lowercaseHexDigest($0) })
            else {
                let name = message.lastIndex(of: 0x20).map { Array(message[..<$0]) } ?? []
                return beginLogin(.undecodable(user: name, mechanism: .cramMD5))
            }
            return beginLogin(.cramMD5(user: name, digest: digest, challenge: challenge))
        case .relay(let mechanism, let index):
            return relayToGlue(mechanism, index: index, message: message)
        }
    }

    /// The glue's next server challenge of a relayed mechanism (SCRAM
    /// server-first, server-final). Written as `+ base64`; the session then
    /// reads the client's next response.
    public mutating func saslChallenge(_ challenge: some Collection<UInt8>, out: inout some ReplySink) {
        guard phase == .authenticating, let pending = relay else { return }
        relay = nil
        phase = .sasl(.relay(pending.mechanism, index: pending.index + 1))
        out.write("+ ")
        out.write(bytes: Base64.encode(challenge))
        out.write("\r\n")
    }

    mutating func relayToGlue(_ mechanism: SASLMechanism, index: Int, message: [UInt8]) -> SessionAction {
        relay = SASLRelay(mechanism: mechanism, index: index)
        phase = .authenticating
        return .saslStep(SASLStep(mechanism: mechanism, index: index, message: message))
    }

    mutating func finishPlain(_ message: [UInt8], out: inout some ReplySink) -> SessionAction {
        guard let credentials = SASLPlain.parse(message), let name = SASLPlain.userToLogIn(credentials) else {
            return beginLogin(.undecodable(user: SASLPlain.authcidOctets(message), mechanism: .plain))
        }
        return beginLogin(.password(user: name, password: credentials.password, mechanism: .plain))
    }

    /// A fresh CRAM-MD5 challenge per attempt (RFC 2195 §2 wants it unique):
    /// the APOP timestamp with an attempt counter before the `@`.
    mutating func cramChallenge() -> String {
        cramAttempts += 1
        let stamp = config.apopTimestamp
        if let at = stamp.lastIndex(of: "@") {
            return String(stamp[..<at]) + "." + String(cramAttempts) + String(stamp[at...])
        }
        return "<" + String(cramAttempts) + "." + stamp + ">"
    }

    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ text: String) -> Bool {
        let utf8 = text.utf8
        guard bytes.count == utf8.count else { return false }
        for (byte, expected) in zip(bytes, utf8) {
            let folded = byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 0x20 : byte
            if folded != expected { return false }
        }
        return true
    }
}
