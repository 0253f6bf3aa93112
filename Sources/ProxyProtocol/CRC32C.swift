/// CRC-32C (Castagnoli), the checksum of the v2 `PP2_TYPE_CRC32C` TLV (proxy-protocol.txt
/// §2.2.3, which points to RFC 4960 Appendix B, the SCTP checksum): reflected polynomial
/// 0x82F63B78, initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF. Check value: CRC-32C of the
/// ASCII "123456789" is 0xE3069283.
///
/// Byte-at-a-time with a 256-entry table: a header is at most a few hundred octets, so the
/// slicing-by-8 or SSE4.2 variants would buy nothing here (and this module has no C).
public struct CRC32C: Sendable {
    /// One entry per byte value: the CRC of that byte alone, without pre/post inversion.
    static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 {
            crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
        }
        return crc
    }

    /// The running register (inverted form).
    private var register: UInt32 = 0xFFFF_FFFF

    /// A fresh checksum (register 0xFFFFFFFF); feed it with `update`.
    public init() {}

    /// Feeds bytes.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        let table = Self.table
        var crc = register
        for byte in bytes {
            crc = table[Int(UInt8(truncatingIfNeeded: crc) ^ byte)] ^ (crc >> 8)
        }
        register = crc
    }

    /// Feeds `count` zero bytes (the checksum field while it is being computed or checked).
    public mutating func updateZeros(_ count: Int) {
        let table = Self.table
        var crc = register
        for _ in 0..<max(0, count) {
            crc = table[Int(UInt8(truncatingIfNeeded: crc))] ^ (crc >> 8)
        }
        register = crc
    }

    /// The checksum of everything fed so far.
    public var value: UInt32 { register ^ 0xFFFF_FFFF }

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc = CRC32C()
        let array = Array(bytes)
        array.withUnsafeBytes { crc.update($0) }
        return crc.value
    }
}
