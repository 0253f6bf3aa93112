import Testing
@testable import Auth

@Suite struct AddressQuotaTests {
    @Test func capsEachAddressAndReleasesExactly() throws {
        let q = AddressQuota(limit: 2)
        let a = try #require(IPAddress("198.51.100.1"))
        let b = try #require(IPAddress("198.51.100.2"))
        #expect(q.acquire(a) && q.acquire(a))
        #expect(!q.acquire(a))  // a third job from a is refused...
        #expect(q.acquire(b))   // ...others are not affected
        #expect(q.outstanding(a) == 2)
        q.release(a)
        #expect(q.acquire(a))
        q.release(a); q.release(a); q.release(b)
        #expect(q.trackedAddresses == 0)
        q.release(a)  // an extra release never goes negative
        #expect(q.outstanding(a) == 0)
    }

    @Test func ipv6CountsPerSlash64AndTrustedNetworksAreExempt() throws {
        let (trusted, _) = CIDRTable.parse(["10.0.0.0/8"])
        let q = AddressQuota(limit: 1, trusted: trusted)
        #expect(q.acquire(try #require(IPAddress("2001:db8:1:2::1"))))
        #expect(!q.acquire(try #require(IPAddress("2001:db8:1:2::ffff"))))
        #expect(q.acquire(try #require(IPAddress("2001:db8:1:3::1"))))
        let proxy = try #require(IPAddress("10.1.2.3"))
        for _ in 0..<100 { #expect(q.acquire(proxy)) }
    }
}
