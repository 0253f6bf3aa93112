import POP3

/// Deterministic inputs shared by the benchmarks (no randomness between runs).
enum Fixtures {
    /// Size of the big RETR message (issue 5: "one 10 MiB message").
    static let bigMessageSize = 10 * 1024 * 1024
    /// Chunk size the glue reads a message file with.
    static let chunkSize = 64 * 1024

    static let sessionConfig = SessionConfig(
        apopTimestamp: "<1.2@bench>",
        plaintextAuthAllowed: true
    )

    /// A listing of `count` messages of about 4 KiB with Maildir-like unique ids.
    static func listing(count: Int) -> MaildropListing {
        var sizes: [Int] = []
        var uids: [String] = []
        sizes.reserveCapacity(count)
        uids.reserveCapacity(count)
        for index in 0..<count {
            sizes.append(4000 + (index * 37) % 500)
            uids.append("1700000000.M\(index)P4242Q\(index).bench")
        }
        return MaildropListing(sizes: sizes, uids: uids)
    }

    static let listing10 = listing(count: 10)
    static let listing1000 = listing(count: 1000)

    /// A session logged in with `listing` (TRANSACTION state), built outside measurement.
    static func transactionSession(_ listing: MaildropListing) -> Session? {
        var session = Session(config: sessionConfig)
        var sink = ByteArraySink()
        session.start(out: &sink)
        _ = handle("USER bench", &session, &sink)
        guard case .authenticate = handle("PASS secret", &session, &sink) else { return nil }
        _ = session.loginFinished(.success(listing), out: &sink)
        return session
    }

    static func handle(_ line: String, _ session: inout Session, _ sink: inout some ReplySink) -> SessionAction {
        var copy = line
        return copy.withUTF8 { session.handleLine(UnsafeRawBufferPointer($0), out: &sink) }
    }

    /// `lines` joined with CRLF, as a pipelining client sends them.
    static func pipelined(_ lines: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        for line in lines {
            bytes.append(contentsOf: line.utf8)
            bytes.append(contentsOf: [0x0D, 0x0A])
        }
        return bytes
    }

    /// A small pseudo-random generator so message bodies vary without `random()`.
    struct LCG {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
    }

    static let headers = """
        Return-Path: <alice@example.org>\n\
        Delivered-To: bob@example.net\n\
        Received: from mx.example.org (mx.example.org [192.0.2.10])\n\
        \tby mail.example.net with ESMTPS id 4242; Tue, 14 Nov 2023 10:00:00 +0000\n\
        From: Alice <alice@example.org>\n\
        To: Bob <bob@example.net>\n\
        Subject: Quarterly figures\n\
        Date: Tue, 14 Nov 2023 10:00:00 +0000\n\
        Message-ID: <4242.bench@example.org>\n\
        MIME-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary="b1"\n\n
        """

    /// A realistic Maildir message file (LF line ends): headers, a text part,
    /// then base64 lines of 76 characters; about 1 line in 64 starts with '.'.
    static func realisticMessage(size: Int) -> [UInt8] {
        var bytes = Array(headers.utf8)
        bytes.reserveCapacity(size + 128)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var rng = LCG(state: 42)
        var line = 0
        while bytes.count < size {
            let length = line % 9 == 0 ? 40 + Int(rng.next() % 30) : 76
            if rng.next() % 64 == 0 { bytes.append(UInt8(ascii: ".")) }
            for _ in 0..<length { bytes.append(alphabet[Int(rng.next() % 64)]) }
            bytes.append(0x0A)
            line += 1
        }
        return Array(bytes[..<size])
    }

    /// Worst case for dot-stuffing: every line is "." LF, so each input line of
    /// 2 bytes becomes ".." CRLF (4 bytes) and the encoder works per line.
    static func dotLinesMessage(size: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        while bytes.count + 2 <= size {
            bytes.append(UInt8(ascii: "."))
            bytes.append(0x0A)
        }
        return bytes
    }

    static let bigMessage = realisticMessage(size: bigMessageSize)
    static let dotMessage = dotLinesMessage(size: bigMessageSize)
    /// The ~4 KiB message RETR sends in the whole-session benchmark.
    static let smallMessage = realisticMessage(size: 4096)

    /// RETR octets of a message file: CRLF line ends, before dot-stuffing.
    static func crlfSize(_ message: [UInt8]) -> Int {
        var size = 0
        var previous: UInt8 = 0
        for byte in message {
            size += (byte == 0x0A && previous != 0x0D) ? 2 : 1
            previous = byte
        }
        if previous != 0x0A && !message.isEmpty { size += 2 }
        return size
    }
}
