/// Byte search helpers shared by the parsers and the encoder.
///
/// `memchr` lives in Glibc, which this module must not import (ARCHITECTURE.md module
/// table), so the search is done eight bytes at a time with the classic
/// "has zero byte" bit trick over unaligned 64-bit loads.
enum ByteScan {
    /// Index of the first `byte` in `buffer[from..<buffer.count]`, or nil.
    @inline(__always)
    static func firstIndex(of byte: UInt8, in buffer: UnsafeRawBufferPointer, from: Int) -> Int? {
        let count = buffer.count
        guard from < count, let base = buffer.baseAddress else { return nil }
        var index = from
        let pattern = UInt64(byte) &* 0x0101_0101_0101_0101
        while index + 8 <= count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ pattern
            let found = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
            if found != 0 {
                // Little-endian on every Linux target we build for: lowest set bit = first byte.
                return index + found.littleEndian.trailingZeroBitCount / 8
            }
            index += 8
        }
        while index < count {
            if base.load(fromByteOffset: index, as: UInt8.self) == byte { return index }
            index += 1
        }
        return nil
    }

    /// Index of the first CR or LF in `buffer[from..<buffer.count]`, or nil: the
    /// next line end under `MessageEncoder`'s rule (CRLF, bare LF or bare CR).
    ///
    /// Both "has zero byte" masks are exact at their lowest set bit (a false
    /// positive needs a borrow from a true zero byte below it), so the lowest bit
    /// of their union is the first CR or LF.
    @inline(__always)
    static func firstLineEnd(in buffer: UnsafeRawBufferPointer, from: Int) -> Int? {
        let count = buffer.count
        guard from < count, let base = buffer.baseAddress else { return nil }
        var index = from
        let ones: UInt64 = 0x0101_0101_0101_0101
        let high: UInt64 = 0x8080_8080_8080_8080
        let crPattern = 0x0D &* ones
        let lfPattern = 0x0A &* ones
        while index + 8 <= count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let cr = word ^ crPattern
            let lf = word ^ lfPattern
            let found = (((cr &- ones) & ~cr) | ((lf &- ones) & ~lf)) & high
            if found != 0 {
                // Little-endian on every Linux target we build for: lowest set bit = first byte.
                return index + found.littleEndian.trailingZeroBitCount / 8
            }
            index += 8
        }
        while index < count {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            if byte == 0x0D || byte == 0x0A { return index }
            index += 1
        }
        return nil
    }

    /// True if any byte in `buffer` is a control character (below 0x20, or DEL).
    /// RFC 1939 §3 commands are printable ASCII; NUL and friends are refused.
    static func containsControl(_ buffer: UnsafeRawBufferPointer) -> Bool {
        for byte in buffer where byte < 0x20 || byte == 0x7F {
            return true
        }
        return false
    }
}
