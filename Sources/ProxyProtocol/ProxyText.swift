import ByteCodec

/// The textual pieces of a v1 header (proxy-protocol.txt §2.1): addresses and ports, parsed
/// strictly and formatted canonically. No Glibc here (`inet_pton` is not available to this
/// module), and the v1 rules are stricter than `inet_pton`'s anyway (no leading zeros).
enum ProxyText {
    /// A dotted quad: exactly four decimal numbers 0...255, one dot between each, no leading
    /// zeros ("to avoid any possible confusion with octal numbers", §2.1). Nil otherwise.
    static func parseIPv4(_ text: ArraySlice<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        var part: UInt32 = 0
        var digits = 0
        var leadingZero = false
        for byte in text {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, parts < 3 else { return nil }
                value = value << 8 | part
                parts += 1
                part = 0
                digits = 0
                leadingZero = false
            } else if let d = decimalDigit(byte) {
                // "0" alone is fine; "01" is not. Three digits at most keeps `part` small.
                guard !leadingZero, digits < 3 else { return nil }
                if digits == 0 && d == 0 { leadingZero = true }
                part = part * 10 + UInt32(d)
                guard part <= 255 else { return nil }
                digits += 1
            } else {
                return nil
            }
        }
        guard parts == 3, digits > 0 else { return nil }
        return value << 8 | part
    }

    /// IPv6 text (RFC 4291 §2.2): eight groups of 1-4 hex digits separated by colons, at most
    /// one `::` standing for one or more zero groups, and optionally a dotted quad as the last
    /// 32 bits. The decoded bits must be exactly 128 (§2.1). Returns (high, low) 64-bit halves.
    static func parseIPv6(_ text: ArraySlice<UInt8>) -> (UInt64, UInt64)? {
        // Groups before and after the "::" (all in `head` when there is none).
        var head: [UInt16] = []
        var tail: [UInt16] = []
        head.reserveCapacity(8)
        var sawDoubleColon = false
        var index = text.startIndex
        let end = text.endIndex
        if index < end && text[index] == UInt8(ascii: ":") {
            // A leading colon is only valid as the start of "::".
            guard index + 1 < end, text[index + 1] == UInt8(ascii: ":") else { return nil }
            sawDoubleColon = true
            index += 2
            if index == end { return (0, 0) }
        }
        while index < end {
            // One group (or the trailing dotted quad) starts here.
            var groupEnd = index
            var isIPv4 = false
            while groupEnd < end && text[groupEnd] != UInt8(ascii: ":") {
                if text[groupEnd] == UInt8(ascii: ".") { isIPv4 = true }
                groupEnd += 1
            }
            if isIPv4 {
                // Only as the very last piece, and it fills two groups.
                guard groupEnd == end, let v4 = parseIPv4(text[index..<groupEnd]) else { return nil }
                let high = UInt16(truncatingIfNeeded: v4 >> 16)
                let low = UInt16(truncatingIfNeeded: v4)
                if sawDoubleColon { tail += [high, low] } else { head += [high, low] }
                index = end
                break
            }
            let length = groupEnd - index
            guard length >= 1, length <= 4 else { return nil }
            var group: UInt16 = 0
            for i in index..<groupEnd {
                guard let h = hexDigit(text[i]) else { return nil }
                group = group << 4 | UInt16(h)
            }
            if sawDoubleColon { tail.append(group) } else { head.append(group) }
            guard head.count + tail.count <= 8 else { return nil }
            index = groupEnd
            if index == end { break }
            // At a colon: a single one separates groups, a second one is the "::".
            index += 1
            if index < end && text[index] == UInt8(ascii: ":") {
                guard !sawDoubleColon else { return nil }
                sawDoubleColon = true
                index += 1
                if index == end { break }
            } else if index == end {
                return nil  // a trailing single colon
            }
        }
        let groups = head.count + tail.count
        if sawDoubleColon {
            guard groups <= 7 else { return nil }  // "::" stands for at least one group
        } else {
            guard groups == 8 else { return nil }
        }
        var all = head
        all += [UInt16](repeating: 0, count: 8 - groups)
        all += tail
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<4 { high = high << 16 | UInt64(all[i]) }
        for i in 4..<8 { low = low << 16 | UInt64(all[i]) }
        return (high, low)
    }

    /// A TCP port: decimal 0...65535, no leading zeros (§2.1), at most five digits.
    static func parsePort(_ text: ArraySlice<UInt8>) -> UInt16? {
        guard !text.isEmpty, text.count <= 5 else { return nil }
        if text.count > 1 && text.first == UInt8(ascii: "0") { return nil }
        var value: UInt32 = 0
        for byte in text {
            guard let d = decimalDigit(byte) else { return nil }
            value = value * 10 + UInt32(d)
        }
        return value <= 65535 ? UInt16(value) : nil
    }

    static func decimalDigit(_ byte: UInt8) -> UInt8? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? byte - UInt8(ascii: "0") : nil
    }

    static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Dotted quad, or RFC 5952 §4 text: lower-case hex without leading zeros, the longest run
    /// of two or more zero groups (the first of equal runs) written as `::`.
    static func format(_ address: ProxyAddress) -> [UInt8] {
        var out: [UInt8] = []
        switch address {
        case .v4(let a):
            for shift in [24, 16, 8, 0] {
                if shift != 24 { out.append(UInt8(ascii: ".")) }
                out.appendDecimal(a >> UInt32(shift) & 0xff)
            }
        case .v6(let high, let low):
            var groups = [UInt16](repeating: 0, count: 8)
            for i in 0..<4 {
                groups[i] = UInt16(truncatingIfNeeded: high >> UInt64(48 - 16 * i))
                groups[4 + i] = UInt16(truncatingIfNeeded: low >> UInt64(48 - 16 * i))
            }
            var bestStart = -1
            var bestLength = 1  // a single zero group is not compressed (RFC 5952 §4.2.2)
            var i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8 && groups[j] == 0 { j += 1 }
                    if j - i > bestLength { bestStart = i; bestLength = j - i }
                    i = j
                } else {
                    i += 1
                }
            }
            i = 0
            while i < 8 {
                if i == bestStart {
                    out += [UInt8(ascii: ":"), UInt8(ascii: ":")]
                    i += bestLength
                    continue
                }
                if i != 0 && out.last != UInt8(ascii: ":") { out.append(UInt8(ascii: ":")) }
                out.appendHex(UInt64(groups[i]))  // no leading zeros (RFC 5952 §4.1)
                i += 1
            }
        }
        return out
    }
}
