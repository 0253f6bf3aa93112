import ByteCodec
import Testing

/// `Digits`, the one decimal and hex digit writer: every result compared with the standard
/// library's `String(value)` and `String(value, radix: 16)`, which the hand-written writers it
/// replaced (replies, session-end line, PROXY text, log escapes) matched octet for octet.
@Suite struct DigitsTests {
    /// 0, 1, 9, 10, 11, every power of ten the type holds with its neighbours, and the
    /// type's extremes.
    static func decimalEdges<T: FixedWidthInteger>(_: T.Type) -> [T] {
        var values: [T] = [0, 1, 9, 10, 11, T.max, T.max - 1, T.min, T.min + 1]
        var power: T = 1
        while true {
            values += [power - 1, power, power + 1]
            if T.isSigned { values += [0 - power, 1 - power, -1 - power] }
            let (next, overflow) = power.multipliedReportingOverflow(by: 10)
            if overflow { break }
            power = next
        }
        return values
    }

    static func decimal(_ value: some BinaryInteger) -> String {
        var out: [UInt8] = [UInt8(ascii: "x")]
        out.appendDecimal(value)
        let lent = Digits.withDecimal(value) { Array($0) }
        #expect(Array(out.dropFirst()) == lent, "appendDecimal and withDecimal agree")
        #expect(out.first == UInt8(ascii: "x"), "appends, does not overwrite")
        return String(decoding: out.dropFirst(), as: UTF8.self)
    }

    static func checkDecimals<T: FixedWidthInteger>(_ type: T.Type) {
        for value in decimalEdges(type) {
            #expect(decimal(value) == String(value), "\(T.self) \(value)")
        }
    }

    @Test func decimalOfEveryStandardIntegerTypeAtItsEdges() {
        Self.checkDecimals(Int.self)
        Self.checkDecimals(UInt.self)
        Self.checkDecimals(Int8.self)
        Self.checkDecimals(UInt8.self)
        Self.checkDecimals(Int16.self)
        Self.checkDecimals(UInt16.self)
        Self.checkDecimals(Int32.self)
        Self.checkDecimals(UInt32.self)
        Self.checkDecimals(Int64.self)
        Self.checkDecimals(UInt64.self)
    }

    @Test func decimalSpelledOut() {
        #expect(Self.decimal(0) == "0")
        #expect(Self.decimal(9) == "9")
        #expect(Self.decimal(10) == "10")
        #expect(Self.decimal(-7) == "-7")
        #expect(Self.decimal(UInt64.max) == "18446744073709551615")
        #expect(Self.decimal(Int64.min) == "-9223372036854775808")
        #expect(Self.decimal(UInt8(255)) == "255")
    }

    /// Types wider than 64 bits take the generic path (no `UInt64` fast path).
    @Test func decimalWiderThan64Bits() {
        Self.checkDecimals(Int128.self)
        Self.checkDecimals(UInt128.self)
        #expect(Self.decimal(UInt128.max) == "340282366920938463463374607431768211455")
        #expect(Self.decimal(Int128.min) == "-170141183460469231731687303715884105728")
    }

    @Test func decimalOfRandomValues() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<5000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let shift = Int(state >> 58)  // 0...63: every digit count
            let value = Int64(bitPattern: state) >> shift
            #expect(Self.decimal(value) == String(value))
            #expect(Self.decimal(UInt64(bitPattern: value)) == String(UInt64(bitPattern: value)))
        }
    }

    static func hex(_ value: UInt64, _ minimumDigits: Int) -> String {
        var out: [UInt8] = [UInt8(ascii: "x")]
        out.appendHex(value, minimumDigits: minimumDigits)
        let lent = Digits.withHex(value, minimumDigits: minimumDigits) { Array($0) }
        #expect(Array(out.dropFirst()) == lent, "appendHex and withHex agree")
        return String(decoding: out.dropFirst(), as: UTF8.self)
    }

    /// `String(value, radix: 16)` left-padded with `0` to `width`.
    static func padded(_ value: UInt64, _ width: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    static let hexEdges: [UInt64] = {
        var values: [UInt64] = [0, 1, 9, 10, 15, 0xFF, 0x2028, UInt64(UInt16.max), UInt64(UInt32.max), UInt64.max, UInt64.max - 1]
        for digits in 1..<16 {
            let power = UInt64(1) << (4 * digits)
            values += [power - 1, power, power + 1]
        }
        return values
    }()

    @Test func hexAtEveryWidthAgainstStringRadix16() {
        for value in Self.hexEdges {
            for width in 1...20 {
                #expect(Self.hex(value, width) == Self.padded(value, width), "\(value) width \(width)")
            }
            // No padding asked for: the minimal form (RFC 5952 §4.1's IPv6 groups).
            var out: [UInt8] = []
            out.appendHex(value)
            #expect(String(decoding: out, as: UTF8.self) == String(value, radix: 16))
        }
    }

    @Test func hexSpelledOutAndWidthLimits() {
        #expect(Self.hex(0, 1) == "0")
        #expect(Self.hex(0xAB, 2) == "ab", "lower case")
        #expect(Self.hex(0x7, 2) == "07")
        #expect(Self.hex(0x85, 4) == "0085")
        #expect(Self.hex(0xDEAD_BEEF, 8) == "deadbeef")
        #expect(Self.hex(0x1_0000, 4) == "10000", "a wider value is never cut")
        #expect(Self.hex(UInt64.max, 16) == "ffffffffffffffff")
        // Out-of-range widths are taken within 1...maxHexOctets.
        #expect(Self.hex(5, 0) == "5")
        #expect(Self.hex(5, -3) == "5")
        #expect(Self.hex(5, Digits.maxHexOctets + 10) == Self.padded(5, Digits.maxHexOctets))
    }
}
