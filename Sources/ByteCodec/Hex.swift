/// Base16 (RFC 4648 §8), the project's one codec for it: digests in APOP (RFC 1939 §7) and
/// CRAM-MD5 (RFC 2195 §2) responses, UIDLs made from SHA-256, secrets stored in Dovecot's
/// `{SCHEME.hex}` form. Standard library only, like `Base64`.
public enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Two lowercase hex digits per octet, high nibble first.
    public static func encode(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            output.append(digits[Int(byte >> 4)])
            output.append(digits[Int(byte & 0x0F)])
        }
        return output
    }

    /// `encode` as text.
    public static func encodedString(_ bytes: some Collection<UInt8>) -> String {
        String(decoding: encode(bytes), as: UTF8.self)
    }

    /// The octets of hex text in either case; nil for an odd length or a byte that is not a
    /// hex digit (the input comes from clients and files).
    public static func decode(_ input: some Collection<UInt8>) -> [UInt8]? {
        guard input.count % 2 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 2)
        var high: UInt8? = nil
        for byte in input {
            guard let value = nibble(byte) else { return nil }
            if let h = high {
                output.append(h << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return output
    }

    /// `decode` of text's UTF-8 octets.
    public static func decode(_ text: String) -> [UInt8]? {
        decode(Array(text.utf8))
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
