import Testing
@testable import Auth

final class FakeClock {
    var now: Duration = .seconds(1000)
}

@Suite struct CIDRTests {
    @Test func parsesAndMatchesIPv4AndIPv6() throws {
        let loop4 = try #require(CIDR("127.0.0.0/8"))
        #expect(loop4.contains(try #require(IPAddress("127.1.2.3"))))
        #expect(!loop4.contains(try #require(IPAddress("128.0.0.1"))))
        let loop6 = try #require(CIDR("::1/128"))
        #expect(loop6.contains(try #require(IPAddress("::1"))))
        #expect(!loop6.contains(try #require(IPAddress("::2"))))
        let ten = try #require(CIDR("10.1.2.3/8"))  // host bits ignored
        #expect(ten.description == "10.0.0.0/8")
        #expect(ten.contains(try #require(IPAddress(bytes: [10, 255, 0, 1]))))
        let host = try #require(CIDR("192.0.2.7"))
        #expect(host.prefixLength == 32)
        #expect(host.contains(try #require(IPAddress("192.0.2.7"))))
        #expect(!host.contains(try #require(IPAddress("192.0.2.8"))))
        let net6 = try #require(CIDR("2001:db8:abcd::/48"))
        #expect(net6.contains(try #require(IPAddress("2001:db8:abcd:ffff::1"))))
        #expect(!net6.contains(try #require(IPAddress("2001:db8:abce::1"))))
        #expect(try #require(CIDR("::/0")).contains(try #require(IPAddress("fe80::1"))))
        #expect(!(try #require(CIDR("::/0"))).contains(try #require(IPAddress("1.2.3.4"))))
        #expect(try #require(CIDR("0.0.0.0/0")).contains(try #require(IPAddress("1.2.3.4"))))
        // v4-mapped addresses and networks are IPv4.
        let mapped = try #require(IPAddress("::ffff:127.0.0.1"))
        #expect(mapped == IPAddress("127.0.0.1"))
        #expect(loop4.contains(mapped))
        #expect(CIDR("::ffff:10.0.0.0/104") != nil)
        #expect(CIDR("::ffff:10.0.0.0/104") == CIDR("10.0.0.0/8"))
        for bad in ["", "10.0.0.0/33", "::1/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8",
                    "256.0.0.1", "hello", "::ffff:10.0.0.0/8", "1.2.3.4/ 8"] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(try #require(IPAddress("2001:db8::1")).description == "2001:db8::1")
        #expect(try #require(IPAddress("192.0.2.1")).description == "192.0.2.1")
        let (table, invalid) = CIDRTable.parse(["127.0.0.0/8", "::1", "nope"])
        #expect(invalid == ["nope"])
        #expect(table.contains(try #require(IPAddress("::1"))))
        #expect(!table.contains(try #require(IPAddress("10.0.0.1"))))
    }
}

@Suite struct FailurePenaltyTests {
    @Test func delaysGrowThenCapAndSuccessResets() throws {
        let clock = FakeClock()
        let p = FailurePenalty(clock: { clock.now })
        let a = try #require(IPAddress("198.51.100.9"))
        let delays = (0..<7).map { _ in p.recordFailure(from: a) }
        #expect(delays == [.zero, .seconds(2), .seconds(4), .seconds(8), .seconds(15), .seconds(15), .seconds(15)])
        #expect(p.failures(for: a) == 7)
        let other = try #require(IPAddress("198.51.100.10"))
        #expect(p.recordFailure(from: other) == .zero)
        p.recordSuccess(from: a)
        #expect(p.failures(for: a) == 0)
        #expect(p.recordFailure(from: a) == .zero)
        #expect(p.recordFailure(from: a) == .seconds(2))
        // A long quiet period forgets the record.
        clock.now += FailurePenalty.forgetAfter + .seconds(1)
        #expect(p.failures(for: a) == 0)
        #expect(p.recordFailure(from: a) == .zero)
    }

    /// The penalty is served before the next attempt is verified (issue 9, finding 6): no wait
    /// after zero or one failure; after n >= 2 the delay the next failure would earn, less the
    /// time already passed since the last failure.
    @Test func delayBeforeAttemptIsServedFirstAndShrinksWithTime() throws {
        let clock = FakeClock()
        let p = FailurePenalty(clock: { clock.now })
        let a = try #require(IPAddress("198.51.100.7"))
        #expect(p.delayBeforeAttempt(from: a) == .zero)
        _ = p.recordFailure(from: a)
        #expect(p.delayBeforeAttempt(from: a) == .seconds(2))
        clock.now += .milliseconds(500)
        #expect(p.delayBeforeAttempt(from: a) == .milliseconds(1500))
        clock.now += .seconds(5)  // a person retyping after a while waits nothing
        #expect(p.delayBeforeAttempt(from: a) == .zero)
        for _ in 0..<9 { _ = p.recordFailure(from: a) }
        #expect(p.delayBeforeAttempt(from: a) == FailurePenalty.maxDelay)
        let (trusted, _) = CIDRTable.parse(["198.51.100.0/24"])
        let exempt = FailurePenalty(trusted: trusted, clock: { clock.now })
        for _ in 0..<5 { _ = exempt.recordFailure(from: a) }
        #expect(exempt.delayBeforeAttempt(from: a) == .zero)
        p.recordSuccess(from: a)
        #expect(p.delayBeforeAttempt(from: a) == .zero)
    }

    @Test func trustedNetworksAreExemptAndIPv6CountsPerSlash64() throws {
        let (trusted, _) = CIDRTable.parse(["127.0.0.0/8", "::1/128"])
        let p = FailurePenalty(trusted: trusted, clock: { .zero })
        let local = try #require(IPAddress("127.0.0.5"))
        for _ in 0..<5 { #expect(p.recordFailure(from: local) == .zero) }
        #expect(p.trackedAddresses == 0)
        #expect(p.isTrusted(try #require(IPAddress("::ffff:127.0.0.1"))))
        _ = p.recordFailure(from: try #require(IPAddress("2001:db8:1:2::1")))
        #expect(p.recordFailure(from: try #require(IPAddress("2001:db8:1:2::ffff"))) == .seconds(2))
        #expect(p.recordFailure(from: try #require(IPAddress("2001:db8:1:3::1"))) == .zero)
    }

    @Test func tableIsBoundedAndEvictsOldest() throws {
        let clock = FakeClock()
        let p = FailurePenalty(capacity: 3, clock: { clock.now })
        let addrs = try (1...4).map { try #require(IPAddress("203.0.113.\($0)")) }
        for a in addrs.prefix(3) {
            _ = p.recordFailure(from: a)
            _ = p.recordFailure(from: a)
            clock.now += .seconds(1)
        }
        #expect(p.trackedAddresses == 3)
        _ = p.recordFailure(from: addrs[3])
        #expect(p.trackedAddresses == 3)
        #expect(p.failures(for: addrs[0]) == 0)  // the oldest went
        #expect(p.failures(for: addrs[1]) == 2)
        #expect(p.failures(for: addrs[3]) == 1)
        // A new failure makes an address the most recent: the next one out is addrs[2].
        _ = p.recordFailure(from: addrs[1])
        _ = p.recordFailure(from: try #require(IPAddress("203.0.113.99")))
        #expect(p.failures(for: addrs[2]) == 0)
        #expect(p.failures(for: addrs[1]) == 3)
        // Expired records leave first, without any scan of the table.
        clock.now += FailurePenalty.forgetAfter + .seconds(1)
        _ = p.recordFailure(from: addrs[0])
        #expect(p.trackedAddresses == 1)
    }
}
