/// The project's one writer of the decimal and hexadecimal digits of integers: reply numbers
/// (RFC 1939 §5 "+OK 2 320", §7 LIST/UIDL lines), the session-end log line, PROXY headers'
/// ports and addresses (HAProxy's doc/proxy-protocol.txt §2.1, RFC 5952 §4), `\xHH` and `\uHHHH`
/// escapes in log values. ASCII octets, no `String` and no heap allocation: the digits are
/// written backwards into a stack buffer and lent to the caller (`withDecimal`, `withHex`), or
/// appended to an array (`Array.appendDecimal`, `Array.appendHex`). Standard library only.
public enum Digits {
    /// Octets `withDecimal` needs at most for a 64-bit integer: the 20 digits of
    /// `UInt64.max`, or `-` and the 19 digits of `Int64.min`. Wider integer types get a
    /// buffer sized from their `bitWidth`.
    public static let maxDecimalOctets64 = 20

    /// Calls `body` with the decimal text of `value` (`-` first when negative, no leading zeros,
    /// `0` for zero): octet for octet what `String(value)` and `"\(value)"` give. The buffer is on
    /// the stack and valid only during `body`. Any `BinaryInteger`, wider than 64 bits included.
    @inlinable
    public static func withDecimal<T: BinaryInteger, R>(
        _ value: T, _ body: (UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        // log10(2) < 0.302, so a magnitude of `bitWidth` bits has at most bitWidth * 0.302 + 1
        // digits; `bitWidth / 3 + 2` covers that and the sign (21 for 64 bits).
        let capacity = Swift.max(value.bitWidth / 3 + 2, maxDecimalOctets64 + 1)
        return try withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 1) { buffer in
            let start = writeDecimal(value, endingAt: buffer)
            return try body(UnsafeRawBufferPointer(rebasing: buffer[start...]))
        }
    }

    /// Calls `body` with the lower-case hexadecimal digits of `value`, left-padded with `0`
    /// to `minimumDigits` (1: no leading zeros, as RFC 5952 §4.1 writes an IPv6 group; 2, 4 or
    /// 8 for a fixed width when the value fits, as `\xHH`), never cut: a value with more digits
    /// than `minimumDigits` gets all of them. The text of `String(value, radix: 16)` padded.
    /// `minimumDigits` is taken within 1...`maxHexOctets`.
    @inlinable
    public static func withHex<R>(
        _ value: UInt64, minimumDigits: Int = 1, _ body: (UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        let width = Swift.min(Swift.max(minimumDigits, 1), maxHexOctets)
        return try withUnsafeTemporaryAllocation(byteCount: maxHexOctets, alignment: 1) { buffer in
            var index = buffer.count
            var rest = value
            repeat {
                index -= 1
                buffer[index] = hexDigit(UInt8(truncatingIfNeeded: rest & 0xF))
                rest >>= 4
            } while rest != 0
            while buffer.count - index < width {
                index -= 1
                buffer[index] = UInt8(ascii: "0")
            }
            return try body(UnsafeRawBufferPointer(rebasing: buffer[index...]))
        }
    }

    /// Widest `withHex` text: 64 digits (a padding of more is cut to this).
    public static let maxHexOctets = 64

    /// Writes the decimal text of `value` so that it ends at the end of `buffer` and returns
    /// the index of its first octet. `buffer` must hold it (`withDecimal` sizes it).
    @inlinable
    static func writeDecimal<T: BinaryInteger>(_ value: T, endingAt buffer: UnsafeMutableRawBufferPointer) -> Int {
        var index = buffer.count
        // The magnitude, so `Int.min` (whose negation traps) is written like any other.
        if let small = UInt64(exactly: value.magnitude) {
            var rest = small
            repeat {
                index -= 1
                buffer[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest % 10)
                rest /= 10
            } while rest != 0
        } else {
            var rest = value.magnitude
            repeat {
                let (quotient, remainder) = rest.quotientAndRemainder(dividingBy: 10)
                index -= 1
                buffer[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remainder)
                rest = quotient
            } while rest != 0
        }
        if value < 0 {
            index -= 1
            buffer[index] = UInt8(ascii: "-")
        }
        return index
    }

    /// The lower-case hex digit of `nibble` (0...15).
    @inlinable
    static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") &+ nibble : UInt8(ascii: "a") &+ (nibble &- 10)
    }
}

extension Array where Element == UInt8 {
    /// Appends the decimal text of `value` (`Digits.withDecimal`: as `"\(value)"`).
    @inlinable
    public mutating func appendDecimal(_ value: some BinaryInteger) {
        Digits.withDecimal(value) { append(contentsOf: $0) }
    }

    /// Appends the lower-case hex digits of `value`, padded with `0` to `minimumDigits`
    /// (`Digits.withHex`).
    @inlinable
    public mutating func appendHex(_ value: UInt64, minimumDigits: Int = 1) {
        Digits.withHex(value, minimumDigits: minimumDigits) { append(contentsOf: $0) }
    }
}
