import POP3
import Testing
import TestSupport

/// Issue 9, finding 2: sizes come from disk (a crafted size cache, `W=` fields of a sparse
/// file of many TiB) and commands from the client; no sequence of them may trap the session.
@Suite struct ExtremeSizeTests {
    static let extremes: [Int] = [
        0, 1, 46, Int.max, Int.max - 1, Int.max / 2, Int.max / 2 + 1,
        999_999_999_999_999_999, 15 << 40, 2 * (15 << 40) + 2, -1, Int.min,
    ]

    /// Drives one session: login with `sizes`, then `commands`; returns every reply line.
    struct Driver {
        var session = Session(config: SessionConfig(
            banner: "ready", apopTimestamp: "<1.1@test>", implementation: nil,
            stlsAvailable: false, plaintextAuthAllowed: true))
        var out = ByteArraySink()
        var committed: [Int]? = nil

        init(sizes: [Int]) {
            session.start(out: &out)
            _ = send("USER a")
            let action = send("PASS b")
            #expect(action == .authenticate(.password(user: "a", password: Array("b".utf8), mechanism: .user)))
            let uids = sizes.indices.map { "uid\($0)" }
            _ = session.loginFinished(.success(MaildropListing(sizes: sizes, uids: uids)), out: &out)
        }

        /// Sends one command line and performs what the glue would (listing production,
        /// message open, UPDATE); returns the action (after an open: `messageOpened`'s).
        @discardableResult
        mutating func send(_ line: String) -> SessionAction {
            let bytes = Array(line.utf8)
            var action = bytes.withUnsafeBytes { session.handleLine($0, out: &out) }
            if case .openMessage = action { action = session.messageOpened(.opened, out: &out) }
            switch action {
            case .produce:
                while !session.produceMore(out: &out, maxBytes: 64) {}
            case .commitDeletions(let indices):
                committed = indices
                _ = session.updateFinished(failed: 0, out: &out)
            default:
                break
            }
            return action
        }

        /// The reply lines written since the last call.
        mutating func takeLines() -> [String] {
            let text = out.text
            out.bytes.removeAll()
            return text.split(separator: "\r\n", omittingEmptySubsequences: true).map(String.init)
        }
    }

    /// The figure the session must show for `octets`: exact, clamped to Int.max.
    static func shown(_ sizes: [Int], where include: (Int) -> Bool) -> Int {
        var sum: Int128 = 0
        for (i, s) in sizes.enumerated() where include(i) { sum += Int128(max(0, s)) }
        return Int(clamping: sum)
    }

    /// The reproduction of the attack review: ten messages "of" 999,999,999,999,999,999
    /// octets (a crafted pop3d.sizes), `DELE 1` and `STAT`, then ten `RETR 1`.
    @Test func craftedCacheSizesThenDeleAndStatDoNotTrap() {
        let sizes = Array(repeating: 999_999_999_999_999_999, count: 10)
        var d = Driver(sizes: sizes)
        #expect(d.takeLines().last == "+OK maildrop has 10 messages (\(Int.max) octets)")
        d.send("DELE 1")
        d.send("STAT")
        // 10e18 is above Int.max (shown clamped), the 9 × 999,999,999,999,999,999 left are below it (shown exactly).
        #expect(d.takeLines() == ["+OK message 1 deleted", "+OK 9 8999999999999999991"])
        d.send("RSET")
        _ = d.takeLines()
        for _ in 0..<10 { d.send("RETR 1") }
        #expect(d.session.counters.octetsRetrieved == Int.max)
        for n in 2...10 { d.send("DELE \(n)") }
        _ = d.takeLines()
        d.send("STAT")
        #expect(d.takeLines() == ["+OK 1 999999999999999999"])
    }

    /// A 15 TiB sparse file with honest `S=`/`W=` fields, truncated after login, fetched by
    /// ~280,000 pipelined `RETR 1`: the octets-retrieved counter saturates.
    @Test func manyRetrievalsOfAHugeMessageSaturateTheCounter() {
        var d = Driver(sizes: [2 * (15 << 40) + 2])
        for _ in 0..<300_000 {
            d.send("RETR 1")
            d.out.bytes.removeAll(keepingCapacity: true)
        }
        #expect(d.session.counters.messagesRetrieved == 300_000)
        #expect(d.session.counters.octetsRetrieved == Int.max)
    }

    /// Property: random DELE/RSET/STAT/LIST/RETR/TOP/UIDL/NOOP sequences over listings of
    /// extreme sizes never trap, and every figure the session shows is the exact one clamped
    /// to Int.max; QUIT commits exactly the messages marked deleted.
    @Test func randomCommandsOverExtremeSizesNeverTrapAndStayExact() {
        var rng = SplitMix64(seed: 0x5EED_0009)
        for _ in 0..<400 {
            let count = Int.random(in: 1...8, using: &rng)
            let sizes = (0..<count).map { _ in
                Bool.random(using: &rng)
                    ? ExtremeSizeTests.extremes.randomElement(using: &rng) ?? 0
                    : Int.random(in: 0...Int.max, using: &rng)
            }
            var d = Driver(sizes: sizes)
            let total = Self.shown(sizes) { _ in true }
            #expect(d.takeLines().last == "+OK maildrop has \(count) messages (\(total) octets)")
            var deleted = Set<Int>()
            var retrieved: Int128 = 0
            for _ in 0..<60 {
                let n = Int.random(in: 1...(count + 1), using: &rng)  // count + 1: no such message
                switch Int.random(in: 0..<8, using: &rng) {
                case 0:
                    d.send("DELE \(n)")
                    let line = d.takeLines().first ?? ""
                    if n <= count && !deleted.contains(n - 1) {
                        #expect(line == "+OK message \(n) deleted")
                        deleted.insert(n - 1)
                    } else {
                        #expect(line.hasPrefix("-ERR"))
                    }
                case 1:
                    d.send("RSET")
                    deleted.removeAll()
                    #expect(d.takeLines() == ["+OK maildrop has \(count) messages (\(total) octets)"])
                case 2:
                    d.send("STAT")
                    let left = Self.shown(sizes) { !deleted.contains($0) }
                    #expect(d.takeLines() == ["+OK \(count - deleted.count) \(left)"])
                case 3:
                    d.send("LIST")
                    let lines = d.takeLines()
                    let left = Self.shown(sizes) { !deleted.contains($0) }
                    #expect(lines.first == "+OK \(count - deleted.count) messages (\(left) octets)")
                    let expected = sizes.indices.filter { !deleted.contains($0) }.map { "\($0 + 1) \(max(0, sizes[$0]))" }
                    #expect(Array(lines.dropFirst().dropLast()) == expected)
                    #expect(lines.last == ".")
                case 4:
                    let action = d.send("RETR \(n)")
                    let line = d.takeLines().first ?? ""
                    if n <= count && !deleted.contains(n - 1) {
                        #expect(action == .streamMessage(index: n - 1, bodyLines: nil))
                        #expect(line == "+OK \(max(0, sizes[n - 1])) octets")
                        retrieved += Int128(max(0, sizes[n - 1]))
                    } else {
                        #expect(line.hasPrefix("-ERR"))
                    }
                case 5:
                    d.send("LIST \(n)")
                    let line = d.takeLines().first ?? ""
                    if n <= count && !deleted.contains(n - 1) {
                        #expect(line == "+OK \(n) \(max(0, sizes[n - 1]))")
                    } else {
                        #expect(line.hasPrefix("-ERR"))
                    }
                case 6:
                    d.send("TOP \(n) \(Int.random(in: 0...9_999_999_999, using: &rng))")
                    _ = d.takeLines()
                default:
                    d.send(Bool.random(using: &rng) ? "UIDL" : "NOOP")
                    _ = d.takeLines()
                }
            }
            #expect(d.session.counters.octetsRetrieved == Int(clamping: retrieved))
            d.send("QUIT")
            #expect(d.committed == deleted.sorted())
            #expect(d.takeLines() == ["+OK POP3 server signing off (\(count - deleted.count) messages left)"])
        }
    }
}
