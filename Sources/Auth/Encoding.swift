/// Base64 (RFC 4648 §4) and hex, the two encodings Dovecot uses for stored
/// secrets (`{SCHEME.b64}`, `{SCHEME.hex}`) and SCRAM uses on the wire.
/// Decoders return nil on bad input instead of trapping: the input comes from
/// files and clients.
enum ByteEncoding {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func base64(_ bytes: some Collection<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var it = bytes.makeIterator()
        while let b0 = it.next() {
            let b1 = it.next(), b2 = it.next()
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            out.append(b1.map { alphabet[Int(($0 & 0x0f) << 2 | (b2 ?? 0) >> 6)] } ?? UInt8(ascii: "="))
            out.append(b2.map { alphabet[Int($0 & 0x3f)] } ?? UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func sextet(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }

    /// Strict decoder: padding is optional (Dovecot and some generators omit
    /// it) but when present it must be correct; no whitespace, no other bytes.
    static func decodeBase64(_ input: some Collection<UInt8>) -> [UInt8]? {
        var chars = Array(input)
        var pad = 0
        while chars.last == UInt8(ascii: "=") { chars.removeLast(); pad += 1 }
        guard pad <= 2, chars.count % 4 != 1 else { return nil }
        if pad > 0 && (chars.count + pad) % 4 != 0 { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count * 3 / 4)
        var acc: UInt32 = 0, bits = 0
        for c in chars {
            guard let v = sextet(c) else { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        // Leftover bits must be zero, or two encodings would decode the same.
        if bits > 0 && acc & ((1 << UInt32(bits)) - 1) != 0 { return nil }
        return out
    }

    static func decodeBase64(_ string: String) -> [UInt8]? { decodeBase64(Array(string.utf8)) }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func hex(_ bytes: some Collection<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(hexDigits[Int(b >> 4)])
            out.append(hexDigits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Case-insensitive hex decoder; nil on odd length or a non-hex byte.
    static func decodeHex(_ input: some Collection<UInt8>) -> [UInt8]? {
        guard input.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(input.count / 2)
        var high: UInt8? = nil
        for c in input {
            guard let v = nibble(c) else { return nil }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
        }
        return out
    }
}
