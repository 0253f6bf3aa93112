/// Base64 (RFC 4648 §4), the project's one codec for it: SASL responses and challenges on
/// the wire (RFC 5034 §4), SCRAM attributes (RFC 5802 §5.1), and secrets stored in Dovecot's
/// `{SCHEME.b64}` form. Standard library only, so that the pure protocol module (`POP3`) and
/// `Auth` share it.
///
/// Decoding is strict: a byte outside the alphabet (whitespace included), a `=` anywhere but
/// at the end, more than two `=`, or non-zero bits left over after the last octet give nil,
/// never a trap: the input comes from clients and files, and every accepted text has exactly
/// one meaning.
public enum Base64 {
    /// Whether a decoder demands the `=` padding of RFC 4648 §3.2.
    public enum Padding: Sendable {
        /// The length is a multiple of 4 (RFC 5034 §4: SASL on the wire).
        case required
        /// Padding may be left out, but when present it must be right (Dovecot and some
        /// password generators write stored secrets without it).
        case optional
    }

    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Decoding table: 0...63 for alphabet octets, 0xFF otherwise.
    private static let table: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, byte) in alphabet.enumerated() { table[Int(byte)] = UInt8(value) }
        return table
    }()

    /// The padded encoding of `bytes`: 4 octets for every 3 started, in the alphabet of
    /// RFC 4648 §4.
    public static func encode(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var iterator = bytes.makeIterator()
        while let first = iterator.next() {
            let second = iterator.next()
            let third = iterator.next()
            let word = UInt32(first) << 16 | UInt32(second ?? 0) << 8 | UInt32(third ?? 0)
            output.append(alphabet[Int(word >> 18 & 63)])
            output.append(alphabet[Int(word >> 12 & 63)])
            output.append(second == nil ? UInt8(ascii: "=") : alphabet[Int(word >> 6 & 63)])
            output.append(third == nil ? UInt8(ascii: "=") : alphabet[Int(word & 63)])
        }
        return output
    }

    /// `encode` as text (the encoding is ASCII).
    public static func encodedString(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: encode(bytes), as: UTF8.self)
    }

    /// The octets `input` encodes, or nil when it is not canonical base64 under `padding`
    /// (see the type's documentation).
    public static func decode(_ input: UnsafeRawBufferPointer, padding: Padding = .required) -> [UInt8]? {
        var end = input.count
        var pad = 0
        while end > 0, pad < 3, input[end - 1] == UInt8(ascii: "=") {
            end -= 1
            pad += 1
        }
        guard pad <= 2 else { return nil }
        switch padding {
        case .required:
            guard input.count % 4 == 0 else { return nil }
        case .optional:
            // One character carries 6 bits, less than an octet; padding present must be whole.
            guard end % 4 != 1, pad == 0 || input.count % 4 == 0 else { return nil }
        }
        var output: [UInt8] = []
        output.reserveCapacity(end / 4 * 3 + 2)
        var accumulator: UInt32 = 0
        var bits = 0
        for index in 0..<end {
            let value = table[Int(input[index])]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero, or two encodings would decode the same.
        guard bits == 0 || accumulator & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return output
    }

    /// `decode` of a byte collection (an array, a slice of one).
    public static func decode(_ input: some Collection<UInt8>, padding: Padding = .required) -> [UInt8]? {
        if let result = input.withContiguousStorageIfAvailable({ decode(UnsafeRawBufferPointer($0), padding: padding) }) {
            return result
        }
        return Array(input).withUnsafeBytes { decode($0, padding: padding) }
    }

    /// `decode` of text's UTF-8 octets.
    public static func decode(_ text: String, padding: Padding = .required) -> [UInt8]? {
        decode(Array(text.utf8), padding: padding)
    }
}
