/// AUTHORIZATION state: USER/PASS and APOP (RFC 1939 §7), STLS (RFC 2595 §4),
/// and the glue's answer to a login (RFC 2449 §8, RFC 3206 response codes).
extension Session {
    static let apopDigestLength = 32

    mutating func user(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        guard plaintextAllowed else { return refusePlaintext(out: &out) }
        guard arguments.count == 1,
            let name = String(validating: UnsafeRawBufferPointer(rebasing: line[arguments.first]), as: UTF8.self)
        else {
            return badCommand("-ERR usage: USER name\r\n", out: &out)
        }
        pendingUser = name
        out.write("+OK send PASS\r\n")
        return .none
    }

    mutating func pass(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        guard plaintextAllowed else { return refusePlaintext(out: &out) }
        guard let name = pendingUser else {
            return badCommand("-ERR USER first\r\n", out: &out)
        }
        // RFC 1939 §7: a server may treat spaces in the argument as part of the password.
        guard !arguments.rest.isEmpty else {
            return badCommand("-ERR usage: PASS password\r\n", out: &out)
        }
        pendingUser = nil
        return beginLogin(.password(user: name, password: Array(line[arguments.rest]), mechanism: .user))
    }

    mutating func apop(_ line: UnsafeRawBufferPointer, _ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        // Not enabled: the greeting had no timestamp, so there is nothing to answer.
        guard config.apopEnabled else {
            return badCommand("-ERR APOP is not enabled on this server\r\n", out: &out)
        }
        guard plaintextAllowed else { return refusePlaintext(out: &out) }
        guard arguments.count == 2,
            let name = String(validating: UnsafeRawBufferPointer(rebasing: line[arguments.first]), as: UTF8.self),
            let digest = Self.lowercaseHexDigest(UnsafeRawBufferPointer(rebasing: line[arguments.second]))
        else {
            return badCommand("-ERR usage: APOP name digest\r\n", out: &out)
        }
        pendingUser = nil
        return beginLogin(.apop(user: name, digest: digest, timestamp: config.apopTimestamp))
    }

    mutating func stls(_ arguments: CommandArguments, out: inout some ReplySink) -> SessionAction {
        if let failure = noArguments(arguments, out: &out) { return failure }
        guard stlsOffered else {
            return badCommand("-ERR STLS not available\r\n", out: &out)
        }
        // No reply yet: the glue creates the TLS session first (`stlsReady`).
        return .startTLS
    }

    /// The glue's answer to `.startTLS`: `ready` is true when a TLS session was created for
    /// the connection. Writes `+OK` (the glue then switches to TLS) or `-ERR [SYS/TEMP]`
    /// (RFC 3206 §4), and the session goes on in plaintext, STLS still offered.
    public mutating func stlsReady(_ ready: Bool, out: inout some ReplySink) {
        guard ready else {
            out.write("-ERR [SYS/TEMP] TLS not available right now\r\n")
            return
        }
        // RFC 2595 §4 / RFC 5034 §4: forget what the client said before TLS.
        pendingUser = nil
        out.write("+OK begin TLS negotiation\r\n")
    }

    /// Hands credentials to the glue and stops reading until `loginFinished`.
    mutating func beginLogin(_ request: AuthRequest) -> SessionAction {
        user = request.userName
        phase = .authenticating
        return .authenticate(request)
    }

    mutating func refusePlaintext(out: inout some ReplySink) -> SessionAction {
        // RFC 3206 §4 [AUTH]; RFC 5034 §4 requires a configuration refusing plaintext.
        out.write("-ERR [AUTH] plaintext authentication disallowed on non-secure connections\r\n")
        return .none
    }

    /// The glue verified the credentials (or could not).
    public mutating func loginFinished(_ outcome: LoginOutcome, out: inout some ReplySink) -> SessionAction {
        guard phase == .authenticating else { return phase == .closed ? .close : .none }
        relay = nil
        switch outcome {
        case .success(let listing):
            // A listing whose arrays disagree is the glue's bug; never trap on it.
            let count = min(listing.sizes.count, listing.uids.count)
            (sizes, totalOctets) = Self.octets(of: Array(listing.sizes[..<count]))
            uids = Array(listing.uids[..<count])
            deleted = Array(repeating: false, count: count)
            phase = .transaction
            isAuthenticated = true
            // Once per login, for the session-end line (Dovecot's message_bytes, uidl_change).
            counters.maildropOctetsAtLogin = maildropOctets
            counters.uidlChange = listing.uidlChange ?? UIDLChange(uids: uids)
            out.write("+OK maildrop has ")
            out.write(decimal: count)
            out.write(" messages (")
            out.write(decimal: maildropOctets)
            out.write(" octets)\r\n")
            return .none
        case .authFailed:
            return authenticationFailed(out: &out)
        case .inUse:
            phase = .authorization
            out.write("-ERR [IN-USE] maildrop already locked\r\n")
        case .loginDelay:
            phase = .authorization
            out.write("-ERR [LOGIN-DELAY] minimum time between logins not elapsed\r\n")
        case .temporaryFailure(let text):
            phase = .authorization
            out.write("-ERR [SYS/TEMP] ")
            out.write(sanitized: text)
            out.write("\r\n")
        case .permanentFailure(let text):
            phase = .authorization
            out.write("-ERR [SYS/PERM] ")
            out.write(sanitized: text)
            out.write("\r\n")
        }
        return .none
    }

    /// Counts a failed login; at `maxAuthFailures` closes.
    mutating func authenticationFailed(out: inout some ReplySink) -> SessionAction {
        counters.authFailures += 1
        relay = nil
        if counters.authFailures >= config.maxAuthFailures {
            out.write("-ERR [AUTH] authentication failed, closing connection\r\n")
            phase = .closed
            return .close
        }
        phase = .authorization
        out.write("-ERR [AUTH] authentication failed\r\n")
        return .none
    }

    /// 32 hex digits, folded to lower case (the form Auth compares); nil otherwise.
    static func lowercaseHexDigest(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard bytes.count == apopDigestLength else { return nil }
        var folded = [UInt8](repeating: 0, count: apopDigestLength)
        for (index, byte) in bytes.enumerated() {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"): folded[index] = byte
            case UInt8(ascii: "A")...UInt8(ascii: "F"): folded[index] = byte + 0x20
            default: return nil
            }
        }
        return String(decoding: folded, as: UTF8.self)
    }
}
