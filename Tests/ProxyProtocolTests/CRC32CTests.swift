import ProxyProtocol
import Testing

/// CRC-32C known answers: the catalogue check value and RFC 3720 Appendix B.4 (iSCSI uses the
/// same Castagnoli CRC as SCTP, RFC 4960 Appendix B, which proxy-protocol.txt §2.2.3 names).
@Suite struct CRC32CTests {
    @Test func knownVectors() {
        #expect(CRC32C.checksum(b("123456789")) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func incrementalAndZerosAgree() {
        let data = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        for split in [0, 1, 7, 50, 100] {
            var crc = CRC32C()
            data.prefix(split).withUnsafeBytes { crc.update($0) }
            Array(data.dropFirst(split)).withUnsafeBytes { crc.update($0) }
            #expect(crc.value == CRC32C.checksum(data))
        }
        var zeros = CRC32C()
        data.withUnsafeBytes { zeros.update($0) }
        zeros.updateZeros(9)
        #expect(zeros.value == CRC32C.checksum(data + [UInt8](repeating: 0, count: 9)))
    }
}
