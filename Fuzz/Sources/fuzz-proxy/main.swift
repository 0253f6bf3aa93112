import FuzzSupport
import Glibc
import ProxyProtocol

// The PROXY protocol v1/v2 header parser (HAProxy's doc/proxy-protocol.txt), which reads
// the first octets of every connection from `proxy_networks`. The input is what the peer
// sends. Invariants:
// - byte by byte agrees with whole: every prefix shorter than the decision point is
//   `.needMore`, every longer one gives exactly the whole input's answer (the parser keeps no
//   state, so a header split across reads is the same header);
// - a header is decided exactly at its last octet: `consumed` is that prefix's length, never
//   more than the input, at most 107 octets for v1 and the parser's bound for v2;
// - a smaller `maxV2Length` changes nothing for a header that fits it;
// - encode(parse(x)) parses back to the same header (the fields `ProxyHeader` keeps: addresses
//   of an IP client, ALPN, authority, unique id, SSL, netns, a verified CRC32C).

enum Parsers {
    static let standard = ProxyHeaderParser()
    static let smallest = ProxyHeaderParser(maxV2Length: 0)  // clamped to 16 + 216
}

func prefixesToCheck(_ count: Int, decision: Int) -> [Int] {
    if count <= 256 { return Array(0...count) }
    var ks = Set(0...128)
    ks.formUnion(stride(from: 129, to: count, by: 11))
    for k in [decision - 1, decision, decision + 1, count - 1, count] where k >= 0 && k <= count { ks.insert(k) }
    return ks.sorted()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProxy(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let parser = Parsers.standard
    let smallest = Parsers.smallest
    let input = inputBytes(data, size)
    let whole = parser.parse(input)

    // Where the answer is decided: the header's length, or found by scanning for an invalid one.
    var decision = input.count + 1
    switch whole {
    case .needMore:
        break
    case .header(let header, let consumed):
        check(consumed >= 1 && consumed <= input.count, "consumed \(consumed) of \(input.count)")
        switch header.version {
        case .v1: check(consumed <= ProxyHeaderParser.maxV1Length, "v1 header of \(consumed) octets")
        case .v2: check(consumed <= parser.maxV2Length, "v2 header of \(consumed) octets")
        }
        decision = consumed
    case .invalid:
        var low = 0
        var high = input.count
        // The first prefix that is not `.needMore` (monotone, checked below).
        while low < high {
            let mid = (low + high) / 2
            if parser.parse(Array(input[..<mid])) == .needMore { low = mid + 1 } else { high = mid }
        }
        decision = low
    }
    for k in prefixesToCheck(input.count, decision: decision) {
        let result = parser.parse(Array(input[..<k]))
        if k < decision {
            check(result == .needMore, "prefix \(k) of \(show(input)) gives \(result) before the decision at \(decision)")
        } else {
            check(result == whole, "prefix \(k) of \(show(input)) gives \(result), whole gives \(whole)")
        }
    }

    guard case .header(let header, let consumed) = whole else { return 0 }
    if consumed <= smallest.maxV2Length || header.version == .v1 {
        check(smallest.parse(input) == whole, "a smaller v2 bound changes \(show(input))")
    }

    // Round trip through the encoder, with what the encoder cannot say normalised away.
    var expected = header
    let encoded: [UInt8]
    switch header.version {
    case .v1:
        encoded = ProxyHeaderEncoder.v1(header)
    case .v2:
        if header.command == .proxy && header.source == nil {
            // AF_UNIX and AF_UNSPEC carry no client address: the encoder writes AF_UNSPEC.
            expected.family = .unspec
            expected.transportProtocol = .unspec
        }
        guard let bytes = ProxyHeaderEncoder.v2(header, crc: header.crcVerified) else {
            fail("parsed header \(header) cannot be encoded")
        }
        encoded = bytes
    }
    let again = parser.parse(encoded + [0x2B, 0x4F, 0x4B])
    check(again == .header(expected, consumed: encoded.count),
          "\(show(input)) parses to \(header), encodes to \(show(encoded)), which parses to \(again)")
    return 0
}

// libFuzzer's driver with this target (see Package.swift for why not libFuzzer's own main).
exit(runFuzzer(fuzzProxy))
