import ByteCodec
import POP3
import Testing

/// Issue 13 (logs): the session-end line's Dovecot fields (`top=`, `retr=`, `del=`, `size=`,
/// `uidl_change=`) are counted by the session, and every login attempt, malformed SASL
/// included, reaches the glue with its mechanism, so the glue logs one `login failed` line
/// for each failure.
@Suite struct LogFieldTests {
    static func allMechanisms() -> SessionConfig {
        var config = Harness.config()
        config.saslMechanisms = SASLMechanism.allCases
        config.apopEnabled = true
        return config
    }

    static func base64(_ bytes: [UInt8]) -> String { String(decoding: Base64.encode(bytes), as: UTF8.self) }

    @Test func dovecotCountersOfASession() {
        var harness = Harness()
        // TOP 3 0 sends "Subject: three" CRLF CRLF (18 octets), TOP 2 1 the headers, the blank
        // line and "body 1" (30); RETR 1 and 2 are 34 + 46 listed octets; DELE 1 and 3: 34 + 37.
        harness.feed(login + "TOP 3 0\r\nTOP 2 1\r\nRETR 1\r\nRETR 2\r\nDELE 1\r\nDELE 3\r\nQUIT\r\n")
        let c = harness.session.counters
        #expect(c.topCount == 2)
        #expect(c.topOctets == 48)
        #expect(c.messagesRetrieved == 2)
        #expect(c.octetsRetrieved == 80)
        #expect(c.messagesDeleted == 2)
        #expect(c.octetsDeleted == 71)
        #expect(c.maildropOctetsAtLogin == 117)
        // XOR of zlib's crc32 of "uid-one", "uid-two", "uid-three" (Python: zlib.crc32).
        #expect(c.uidlChange == UIDLChange(count: 3, hash: 0xbc13_74c5))
        #expect(c.uidlChange?.description == "3/bc1374c5")
    }

    @Test func rsetForgetsDeletionsAndTopCutShortCountsNoOctets() {
        var harness = Harness()
        harness.feed(login + "DELE 1\r\nRSET\r\nDELE 2\r\nQUIT\r\n")
        #expect(harness.session.counters.messagesDeleted == 1)
        #expect(harness.session.counters.octetsDeleted == 46)
        // A TOP whose stream never finished: counted, with no octets.
        var session = Session(config: Harness.config())
        var out = ByteArraySink()
        for line in ["USER alice", "PASS secret"] {
            let action = Array(line.utf8).withUnsafeBytes { session.handleLine($0, out: &out) }
            if case .authenticate = action {
                _ = session.loginFinished(.success(MaildropListing(sizes: [10], uids: ["u"])), out: &out)
            }
        }
        _ = Array("TOP 1 5".utf8).withUnsafeBytes { session.handleLine($0, out: &out) }
        #expect(session.messageOpened(.opened, out: &out) == .streamMessage(index: 0, bodyLines: 5))
        #expect(session.counters.topCount == 1 && session.counters.topOctets == 0)
    }

    @Test func deletionsUpdateCouldNotDoAreNotCounted() {
        var harness = Harness()
        harness.updateFailures = (count: 1, octets: 34)
        harness.feed(login + "DELE 1\r\nDELE 2\r\nQUIT\r\n")
        #expect(harness.session.counters.messagesDeleted == 1)
        #expect(harness.session.counters.octetsDeleted == 46)
    }

    @Test func aSessionThatNeverLoggedInHasNoMaildropFigures() {
        var harness = Harness()
        harness.feed("USER alice\r\nPASS nope\r\nQUIT\r\n")
        let c = harness.session.counters
        #expect(c.maildropOctetsAtLogin == nil && c.uidlChange == nil)
        #expect(c.topCount == 0 && c.messagesRetrieved == 0 && c.messagesDeleted == 0 && c.octetsDeleted == 0)
    }

    @Test func emptyMaildropHashesToZero() {
        #expect(UIDLChange(uids: []).description == "0/00000000")
        #expect(UIDLChange(count: 1, hash: 0xA).description == "1/0000000a")
        // Order does not matter; any change of any one unique-id does.
        #expect(UIDLChange(uids: ["a", "b"]) == UIDLChange(uids: ["b", "a"]))
        #expect(UIDLChange(uids: ["a", "b"]) != UIDLChange(uids: ["a", "c"]))
    }

    /// The glue hashes a large listing on a storage worker and hands the result over; the
    /// session takes it rather than hash on the loop.
    @Test func aPrecomputedFingerprintIsTaken() {
        var session = Session(config: Harness.config())
        var out = ByteArraySink()
        _ = Array("USER alice".utf8).withUnsafeBytes { session.handleLine($0, out: &out) }
        _ = Array("PASS x".utf8).withUnsafeBytes { session.handleLine($0, out: &out) }
        let given = UIDLChange(count: 1, hash: 0x1234_5678)
        _ = session.loginFinished(.success(MaildropListing(sizes: [5], uids: ["u"], uidlChange: given)), out: &out)
        #expect(session.counters.uidlChange == given)
        var added = UIDLChange()
        for uid in Harness.uids { added.add(uid) }
        #expect(added == UIDLChange(uids: Harness.uids))
    }

    @Test func crc32IsZlibs() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)  // the standard check value
        #expect(CRC32.checksum([UInt8]()) == 0)
        #expect(CRC32.checksum(Array("uid-one".utf8)) ^ CRC32.checksum(Array("uid-two".utf8))
            ^ CRC32.checksum(Array("uid-three".utf8)) == 0xbc13_74c5)
    }

    @Test func everyLoginCarriesItsMechanism() {
        let b64 = Self.base64
        let cram = b64(Array(("alice " + String(repeating: "00", count: 16)).utf8))
        let script = "USER alice\r\nPASS nope\r\n"
            + "APOP alice " + String(repeating: "00", count: 16) + "\r\n"
            + "AUTH PLAIN " + b64(Array("\0alice\0nope".utf8)) + "\r\n"
            + "AUTH LOGIN\r\n" + b64(Array("alice".utf8)) + "\r\n" + b64(Array("nope".utf8)) + "\r\n"
            + "AUTH CRAM-MD5\r\n" + cram + "\r\n"
        var config = Self.allMechanisms()
        config.maxAuthFailures = 10
        var harness = Harness(config: config)
        harness.feed(script)
        #expect(harness.requests.map(\.mechanism) == [.user, .apop, .plain, .login, .cramMD5])
        #expect(harness.session.counters.authFailures == 5)
    }

    @Test func mechanismNamesAndLabels() {
        #expect(LoginMechanism.allCases.map(\.logName) == ["USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"])
        #expect(LoginMechanism.allCases.map(\.metricLabel) == ["user", "apop", "plain", "login", "cram-md5", "scram-sha-256"])
        #expect(SASLMechanism.allCases.map { LoginMechanism($0).logName } == SASLMechanism.allCases.map(\.rawValue))
    }

    /// Responses that decode to no credentials used to fail inside the session, where the glue
    /// never saw them: no `login failed` line, no penalty. They now reach the glue as
    /// `.undecodable` with the name as sent, and fail there like a wrong password.
    @Test(arguments: [
        // PLAIN whose authcid is not UTF-8: the octets as sent.
        ([0x00, 0x61, 0xFF, 0xFE, 0x00, 0x70], "PLAIN", [0x61, 0xFF, 0xFE] as [UInt8]),
        // PLAIN without its leading NUL: the password must not be logged as a name.
        (Array("alice\0secret".utf8), "PLAIN", []),
        // PLAIN with three NULs: not the RFC 4616 framing, no name.
        (Array("\0al\0ice\0pw".utf8), "PLAIN", []),
        // PLAIN naming another identity: the authcid.
        (Array("bob\0alice\0pw".utf8), "PLAIN", Array("alice".utf8)),
        // LOGIN whose name is not UTF-8, or empty.
        ([0x61, 0xC0, 0xAF], "LOGIN", [0x61, 0xC0, 0xAF]),
        // CRAM-MD5 whose digest is not 32 hex digits: the text before the last space.
        (Array("alice xyz".utf8), "CRAM-MD5", Array("alice".utf8)),
    ] as [([UInt8], String, [UInt8])])
    func undecodableResponsesAreFailedLoginsWithTheNameAsSent(message: [UInt8], mechanism: String, name: [UInt8]) {
        var harness = Harness(config: Self.allMechanisms())
        harness.feed("AUTH " + mechanism + "\r\n" + Self.base64(message) + "\r\n")
        let expected = LoginMechanism(SASLMechanism(rawValue: mechanism)!)
        #expect(harness.requests == [.undecodable(user: name, mechanism: expected)])
        #expect(harness.replies.hasSuffix("-ERR [AUTH] authentication failed\r\n"))
        #expect(harness.session.counters.authFailures == 1)
    }

    @Test func loginWithAnEmptyPasswordIsAFailedLoginOfThatUser() {
        var harness = Harness(config: Self.allMechanisms())
        harness.feed("AUTH LOGIN " + Self.base64(Array("alice".utf8)) + "\r\n\r\n")
        #expect(harness.requests == [.undecodable(user: Array("alice".utf8), mechanism: .login)])
        #expect(harness.session.user == "alice")
    }
}
