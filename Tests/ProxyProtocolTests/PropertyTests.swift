import Glibc
import ProxyProtocol
import Testing
import TestSupport

/// Seeded properties: random and mutated input never traps (Swift's checked subscripts and the
/// debug-build checks on unsafe buffers would trap on a read past the input, so running to the
/// end is the "no overread" proof), answers are consistent across splits, and what the encoder
/// writes the parser reads back. `POP3D_PROPERTY_SEED=<n>` replays a seed.
@Suite struct PropertyTests {
    static let cases = 3000

    static var seed: UInt64 {
        if let text = getenv("POP3D_PROPERTY_SEED"), let value = UInt64(String(cString: text)) { return value }
        return 0x5EED_0011_7072_6F78
    }

    static func randomAddress(_ random: inout SplitMix64, v4: Bool) -> ProxyAddress {
        if v4 { return .v4(UInt32.random(in: 0...UInt32.max, using: &random)) }
        // Many zero groups sometimes, so `::` compression in every position gets exercised.
        var groups = (0..<8).map { _ in UInt16.random(in: 0...UInt16.max, using: &random) }
        for i in 0..<8 where Bool.random(using: &random) { groups[i] = 0 }
        let high = groups[0..<4].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        let low = groups[4..<8].reduce(UInt64(0)) { $0 << 16 | UInt64($1) }
        return .v6(high: high, low: low)
    }

    static func randomBytes(_ random: inout SplitMix64, max: Int) -> [UInt8] {
        (0..<Int.random(in: 0...max, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    static func randomHeader(_ random: inout SplitMix64, version: ProxyHeader.Version) -> ProxyHeader {
        let v4 = Bool.random(using: &random)
        var h = ProxyHeader.tcp(
            version: version,
            source: ProxyEndpoint(address: randomAddress(&random, v4: v4), port: UInt16.random(in: 0...65535, using: &random)),
            destination: ProxyEndpoint(address: randomAddress(&random, v4: v4), port: UInt16.random(in: 0...65535, using: &random)))
        guard version == .v2 else { return h }
        if Int.random(in: 0..<8, using: &random) == 0 { h = ProxyHeader(version: .v2, command: .local) }
        if Bool.random(using: &random) { h.alpn = randomBytes(&random, max: 20) }
        if Bool.random(using: &random) { h.authority = randomBytes(&random, max: 255) }
        if Bool.random(using: &random) { h.uniqueID = randomBytes(&random, max: 128) }
        if Bool.random(using: &random) { h.netns = randomBytes(&random, max: 16) }
        if Bool.random(using: &random) {
            var ssl = ProxySSLInfo(client: UInt8.random(in: 0...7, using: &random), verify: UInt32.random(in: 0...3, using: &random))
            if Bool.random(using: &random) { ssl.version = b("TLSv1.3") }
            if Bool.random(using: &random) { ssl.commonName = randomBytes(&random, max: 64) }
            if Bool.random(using: &random) { ssl.cipher = b("TLS_AES_128_GCM_SHA256") }
            if Bool.random(using: &random) { ssl.signatureAlgorithm = b("ECDSA-SHA256") }
            if Bool.random(using: &random) { ssl.keyAlgorithm = b("EC256") }
            h.ssl = ssl
        }
        return h
    }

    /// The answer never depends on how the bytes were split, and a header never claims more
    /// octets than it was given or than the limits allow.
    static func checkConsistent(_ input: [UInt8], _ random: inout SplitMix64) -> String? {
        let parser = ProxyHeaderParser()
        let whole = parser.parse(input)
        if case .header(_, let consumed) = whole {
            if consumed > input.count || consumed > parser.maxV2Length { return "consumed \(consumed) of \(input.count)" }
        }
        let split = Int.random(in: 0...input.count, using: &random)
        var twoSegments = parser.parse(Array(input[..<split]))
        if twoSegments == .needMore { twoSegments = parser.parse(input) }
        if twoSegments != whole { return "split at \(split): \(twoSegments) vs \(whole)" }
        return nil
    }

    @Test func randomBytesNeverTrap() {
        var random = SplitMix64(seed: Self.seed)
        var failures: [String] = []
        for index in 0..<Self.cases where failures.count < 5 {
            // Random bytes behind a random valid-looking start, so the parsers get past octet 1.
            let starts: [[UInt8]] = [[], b("PROXY "), b("PROXY TCP4 "), b("PROXY TCP6 "), b("PROXY UNKNOWN"),
                                     v2Signature, v2Signature + [0x21], v2Signature + [0x21, 0x11],
                                     v2Signature + [0x20, 0x00]]
            let input = starts[index % starts.count] + Self.randomBytes(&random, max: 300)
            if let failure = Self.checkConsistent(input, &random) { failures.append("case \(index): \(failure)") }
        }
        #expect(failures.isEmpty, "seed \(Self.seed): \(failures)")
    }

    @Test func mutatedHeadersNeverTrap() {
        var random = SplitMix64(seed: Self.seed ^ 0x0BAD)
        var failures: [String] = []
        var accepted = 0
        for index in 0..<Self.cases where failures.count < 5 {
            let version: ProxyHeader.Version = index % 2 == 0 ? .v1 : .v2
            let h = Self.randomHeader(&random, version: version)
            var bytes = version == .v1 ? ProxyHeaderEncoder.v1(h) : (ProxyHeaderEncoder.v2(h, crc: Bool.random(using: &random)) ?? [])
            // 1-4 mutations: flip, replace, insert, delete, truncate, or length-field tampering.
            for _ in 0..<Int.random(in: 1...4, using: &random) where !bytes.isEmpty {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<6, using: &random) {
                case 0: bytes[at] ^= UInt8(1) << UInt8.random(in: 0...7, using: &random)
                case 1: bytes[at] = UInt8.random(in: 0...255, using: &random)
                case 2: bytes.insert(UInt8.random(in: 0...255, using: &random), at: at)
                case 3: bytes.remove(at: at)
                case 4: bytes.removeLast(Int.random(in: 0...bytes.count - at, using: &random))
                default:
                    if bytes.count > 15 { bytes[14] = UInt8.random(in: 0...255, using: &random); bytes[15] = UInt8.random(in: 0...255, using: &random) }
                }
            }
            bytes += Self.randomBytes(&random, max: 8)
            if case .header = ProxyHeaderParser().parse(bytes) { accepted += 1 }
            if let failure = Self.checkConsistent(bytes, &random) { failures.append("case \(index): \(failure)") }
        }
        #expect(failures.isEmpty, "seed \(Self.seed): \(failures)")
        // Most mutations must be refused (a no-op mutation or one inside UNKNOWN-free slack is rare).
        #expect(accepted < Self.cases / 2, "accepted \(accepted) of \(Self.cases) mutated headers")
    }

    @Test func encoderRoundTrips() {
        var random = SplitMix64(seed: Self.seed ^ 0x7217)
        var failures: [String] = []
        for index in 0..<Self.cases where failures.count < 5 {
            let version: ProxyHeader.Version = index % 2 == 0 ? .v1 : .v2
            let h = Self.randomHeader(&random, version: version)
            let crc = version == .v2 && Bool.random(using: &random)
            guard let bytes = version == .v1 ? ProxyHeaderEncoder.v1(h) : ProxyHeaderEncoder.v2(h, crc: crc) else {
                failures.append("case \(index): not encodable")
                continue
            }
            if version == .v1 && bytes.count > ProxyHeaderParser.maxV1Length { failures.append("v1 of \(bytes.count) octets") }
            var expected = h
            expected.crcVerified = crc
            let application = Self.randomBytes(&random, max: 16)
            let result = ProxyHeaderParser().parse(bytes + application)
            if result != .header(expected, consumed: bytes.count) {
                failures.append("case \(index): \(String(decoding: bytes.prefix(60), as: UTF8.self).debugDescription) -> \(result), expected \(expected)")
            }
        }
        #expect(failures.isEmpty, "seed \(Self.seed): \(failures)")
    }

    @Test func addressTextRoundTrips() {
        var random = SplitMix64(seed: Self.seed ^ 0xADD7)
        for index in 0..<Self.cases {
            let address = Self.randomAddress(&random, v4: index % 3 == 0)
            let text = address.description
            #expect(ProxyAddress(text) == address, "\(text)")
            #expect(ProxyAddress(bytes: address.bytes) == address)
        }
        #expect(ProxyAddress.v6(high: 0x2001_0DB8_0000_0000, low: 1).description == "2001:db8::1")
        #expect(ProxyAddress.v6(high: 0x2001_0DB8_0000_0001, low: 0x0000_0000_0001_0001).description == "2001:db8:0:1::1:1")
        #expect(ProxyAddress.v6(high: 0x2001_0DB8_0000_0001, low: 0x0001_0001_0001_0001).description == "2001:db8:0:1:1:1:1:1")
        #expect(ProxyAddress.v6(high: 0, low: 0).description == "::")
        #expect(ProxyAddress.v4(0x7F00_0001).description == "127.0.0.1")
        #expect(ProxyAddress("192.0.2.1")?.mappedToIPv6.description == "::ffff:c000:201")
    }

    @Test func mixedFamiliesAreSentAsIPv6() {
        let h = ProxyHeader.tcp(version: .v2, source: endpoint("2001:db8::9", 7), destination: endpoint("127.0.0.1", 110))
        #expect(h.family == .inet6)
        #expect(h.destination == endpoint("::ffff:127.0.0.1", 110))
        #expect(String(decoding: ProxyHeaderEncoder.v1(h), as: UTF8.self) == "PROXY TCP6 2001:db8::9 ::ffff:7f00:1 7 110\r\n")
        // v1 has no LOCAL: it becomes UNKNOWN.
        #expect(ProxyHeaderEncoder.v1(ProxyHeader(version: .v2, command: .local)) == b("PROXY UNKNOWN\r\n"))
    }
}
