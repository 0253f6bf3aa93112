/// Byte search helpers shared by the parsers and the encoder.
///
/// `memchr` lives in Glibc, which this module must not import (ARCHITECTURE.md module
/// table), so the search is done eight bytes at a time with the classic
/// "has zero byte" bit trick over unaligned 64-bit loads.
enum ByteScan {
    /// The top bit of each octet lane of `word` that holds a CR or an LF: the "has zero byte"
    /// trick on `word ^ CR…` and `word ^ LF…`. Exact at its lowest set bit (a false positive
    /// needs a borrow from a true match below it), so the lowest set bit is the first CR or LF
    /// of a little-endian load (`firstLane`). The one line-end test of `firstLineEnd`,
    /// `copyLine` and `MessageEncoder`'s RETR loop.
    @inline(__always)
    static func lineEndLanes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let cr = word ^ (0x0D &* ones)
        let lf = word ^ (0x0A &* ones)
        return (((cr &- ones) & ~cr) | ((lf &- ones) & ~lf)) & 0x8080_8080_8080_8080
    }

    /// The octet index, in a little-endian load, of the lowest lane `lanes` flags (not 0).
    @inline(__always)
    static func firstLane(_ lanes: UInt64) -> Int {
        lanes.littleEndian.trailingZeroBitCount &>> 3
    }

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
        while index + 8 <= count {
            let found = lineEndLanes(base.loadUnaligned(fromByteOffset: index, as: UInt64.self))
            if found != 0 { return index + firstLane(found) }
            index += 8
        }
        while index < count {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            if byte == 0x0D || byte == 0x0A { return index }
            index += 1
        }
        return nil
    }

    /// Copies `source[0..<count]` up to its first CR or LF into `destination`, scanning and
    /// copying 16 octets per step as two 64-bit words with `firstLineEnd`'s bit trick (one pass
    /// over the line instead of a scan, then a copy).
    ///
    /// Returns the line's `length` (octets before the CR or LF, or `count` when there is none)
    /// and whether it `ended` at a CR or LF; nil when the line is longer than `room`. Writes
    /// only inside `destination[0..<room]`: the octets after `length` there are garbage the
    /// caller overwrites or leaves uncounted. A negative `room` returns nil.
    ///
    /// Words rather than `SIMD16`: in release a `SIMD16` version encoded the realistic 10 MiB
    /// message ~13 % faster (7.7 against 6.8 GB/s), but unoptimised the stdlib's generic SIMD
    /// operators made it 7.6x slower than this one, and the tests RETR megabytes through debug
    /// builds. Not `memchr` (the first idea): this module may not import Glibc, and a
    /// stand-alone trial (memchr for LF, then for CR before it, then a copy) was slower than
    /// this scan (3.8 against 4.7 GB/s when both were followed by a separate copy).
    @inline(__always)
    static func copyLine(from source: UnsafeRawPointer, count: Int, to destination: UnsafeMutableRawPointer,
                         room: Int) -> (length: Int, ended: Bool)? {
        guard room >= 0 else { return nil }
        let limit = min(count, room)
        var index = 0
        while index + 16 <= limit {
            let first = source.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            let second = source.loadUnaligned(fromByteOffset: index + 8, as: UInt64.self)
            destination.storeBytes(of: first, toByteOffset: index, as: UInt64.self)
            destination.storeBytes(of: second, toByteOffset: index + 8, as: UInt64.self)
            let found1 = lineEndLanes(first), found2 = lineEndLanes(second)
            if found1 | found2 != 0 {
                return (index + (found1 != 0 ? firstLane(found1) : 8 + firstLane(found2)), true)
            }
            index += 16
        }
        // The last < 16 octets (or the rest, when `room` ends first): scan, then copy if it fits.
        let rest = UnsafeRawBufferPointer(start: source, count: count)
        let end = firstLineEnd(in: rest, from: index) ?? count
        guard end <= room else { return nil }
        (destination + index).copyMemory(from: source + index, byteCount: end - index)
        return (end, end < count)
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
