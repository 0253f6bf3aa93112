import Glibc
import Testing
@testable import Maildrop
import TestSupport

/// Issue 17, the login path's user-space cost: the size cache read as a sorted table of names in
/// place (`SizeCache.Table`), the seen-names filter (`SeenNames`), the word-at-a-time octet
/// checks (`Sys.isASCII`, `MaildirName.printable`) and the directory listing's NUL search.
/// Each is checked against the plain way it replaced, on random and edge-case input.
@Suite struct LoginPathCostTests {
    // MARK: the size cache

    /// `SizeCache.parse` as it was before the table (fields found by spaces, then parsed; every
    /// name a `String(decoding:)` key, a later line replacing an earlier one), the reference.
    static func referenceParse(_ bytes: [UInt8], rule: WireSizeRule = WireSizeRule()) -> [ByteName: SizeCache.Entry]? {
        let newline = UInt8(ascii: "\n"), space = UInt8(ascii: " ")
        guard bytes.last == newline else { return nil }
        let header = Array(SizeCache.header(for: rule).utf8)
        guard bytes.count > header.count, bytes[header.count] == newline, Array(bytes[0..<header.count]) == header
        else { return nil }
        let extra = rule.addsMissingHeaderEnd ? 2 : 0
        var entries: [ByteName: SizeCache.Entry] = [:]
        var at = header.count + 1
        while at < bytes.count {
            let end = bytes[at...].firstIndex(of: newline) ?? bytes.count - 1
            var sp1 = at
            while sp1 < end, bytes[sp1] != space { sp1 += 1 }
            var sp2 = sp1 + 1
            while sp2 < end, bytes[sp2] != space { sp2 += 1 }
            var sp3 = sp2 + 1
            while sp3 < end, bytes[sp3] != space { sp3 += 1 }
            guard sp3 + 1 < end else { return nil }
            var dot = sp1 + 1
            while dot < sp2, bytes[dot] != UInt8(ascii: ".") { dot += 1 }
            guard dot < sp2,
                  let fileSize = MaildirName.parseDecimal(bytes[at..<sp1]),
                  let sec = MaildirName.parseDecimal(bytes[(sp1 + 1)..<dot]),
                  let nsec = MaildirName.parseDecimal(bytes[(dot + 1)..<sp2]),
                  let crlf = MaildirName.parseDecimal(bytes[(sp2 + 1)..<sp3]),
                  crlf >= fileSize,
                  crlf <= CRLFSizeCounter.saturatingAdd(Maildrop.maxCRLFSize(fileSize: fileSize), extra)
            else { return nil }
            let name = String(decoding: bytes[(sp3 + 1)..<end], as: UTF8.self)
            entries[ByteName(name)] = SizeCache.Entry(fileSize: fileSize, mtimeSec: sec, mtimeNsec: nsec, crlfSize: crlf)
            at = end + 1
        }
        return entries
    }

    /// A random cache file: mostly well formed, in octet order or not, with names twice, names
    /// that are not UTF-8 (and ones spelled as their repair), spaces in names, and now and
    /// then a broken field (a second dot, a sign, 19 digits, a missing field, no name, no
    /// final newline, another rule's header).
    static func randomCache(_ rng: inout SplitMix64, rule: WireSizeRule) -> [UInt8] {
        let pool: [[UInt8]] = [
            Array("1700000000.M1P1.host".utf8), Array("1700000001.M2P1.host".utf8), Array("a".utf8),
            Array("b c".utf8), Array("1700000002.V1I2M3.mx.example.org".utf8), [0xFF], [0x61, 0xC3],
            Array("\u{FFFD}".utf8), Array("a\u{FFFD}".utf8), Array("é".utf8), Array("e\u{301}".utf8),
            Array(String(repeating: "z", count: 70).utf8), [0xF0, 0x9F, 0x98], Array("x ".utf8),
        ]
        var out = Array(SizeCache.header(for: rng.next() % 20 == 0
            ? WireSizeRule(addsMissingHeaderEnd: !rule.addsMissingHeaderEnd) : rule).utf8)
        out.append(0x0A)
        var names = (0..<Int(rng.next() % 12)).map { _ in pool[Int(rng.next() % UInt64(pool.count))] }
        if rng.next() % 2 == 0 { names.sort { $0.lexicographicallyPrecedes($1) } }
        for name in names {
            let fileSize = Int(rng.next() % 5_000)
            var fields = ["\(fileSize)", "\(rng.next() % 2_000_000_000)", "\(rng.next() % 1_000_000_000)",
                          "\(fileSize + Int(rng.next() % UInt64(fileSize + 3)))"]
            if rng.next() % 25 == 0 {
                let i = Int(rng.next() % 4)
                fields[i] = ["", "-1", "1.2", String(repeating: "9", count: 19), "x", "+3"][Int(rng.next() % 6)]
            }
            var line = Array("\(fields[0]) \(fields[1]).\(fields[2]) \(fields[3]) ".utf8)
            if rng.next() % 40 == 0 { line.removeLast() }  // no name
            if rng.next() % 40 == 0 { line = Array("\(fields[0]) \(fields[1]) \(fields[3]) ".utf8) }  // no dot
            out += line + name
            out.append(0x0A)
        }
        if rng.next() % 30 == 0 { out.removeLast() }
        return out
    }

    @Test func tableParsesAsTheDictionaryDid() {
        var rng = SplitMix64(seed: 17)
        var parsedSome = 0
        for round in 0..<4_000 {
            let rule = WireSizeRule(addsMissingHeaderEnd: round % 3 == 0)
            let bytes = Self.randomCache(&rng, rule: rule)
            let reference = Self.referenceParse(bytes, rule: rule)
            let parsed = SizeCache.parse(bytes, rule: rule)
            #expect(parsed?.entries == reference, "\(bytes)")
            guard let reference, let table = SizeCache.Table.parse(bytes, rule: rule) else { continue }
            parsedSome += 1
            // One row per distinct name, in octet order, each found with the reference's entry.
            #expect(table.rows.count == reference.count)
            let names = table.rows.indices.map { ByteName(table.name($0)) }
            #expect(names == names.sorted() && Set(names).count == names.count, "\(bytes)")
            for (name, entry) in reference {
                let row = table.find(name.string)
                #expect(row.map { table.rows[$0].entry } == entry, "\(name) in \(bytes)")
            }
        }
        #expect(parsedSome > 1_000)
    }

    @Test func tableFindsOnlyWhatItHolds() {
        let h = SizeCache.header
        let text = "\(h)\n1 1.0 2 b\n3 3.0 4 bb\n5 5.0 6 a b\n7 7.0 8 b\n"  // unsorted, "b" twice
        guard let table = SizeCache.Table.parse(Array(text.utf8)) else {
            Issue.record("does not parse")
            return
        }
        #expect(table.rows.count == 3)
        #expect(table.find("b").map { table.rows[$0].entry.crlfSize } == 8)  // the last line's
        #expect(table.find("bb").map { table.rows[$0].entry.crlfSize } == 4)
        #expect(table.find("a b").map { table.rows[$0].entry.crlfSize } == 6)
        for absent in ["", "a", "ba", "c", "B", "b "] { #expect(table.find(absent) == nil, "\(absent)") }
        #expect(SizeCache.Table(rule: WireSizeRule()).find("b") == nil)
        var used = table
        if let b = used.find("b") {
            used.markUsed(b)
            used.markUsed(b)
        }
        #expect(used.usedCount == 1)
        #expect(used.rows.filter(\.used).count == 1)
    }

    /// Through `Maildrop.open`: an unsorted cache with a name twice (as another program, or an
    /// older pop3d, might leave it) gives the last line's size, and the cache is rewritten
    /// with only the entries of listed messages, sorted.
    @Test func unsortedCacheWithDuplicatesIsUsedAndRewritten() throws {
        let f = try Fixture()
        let a = "1700000000.M0P1.host", b = "1700000001.M0P1.host"
        try f.writer.deliver(Array("a\nb\n".utf8), fileName: a)   // 4 octets, 6 on the wire
        try f.writer.deliver(Array("c\n".utf8), fileName: b)      // 2 octets, 3 on the wire
        var st = stat()
        #expect(stat(f.root + "/new/" + a, &st) == 0)
        let stampA = "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        #expect(stat(f.root + "/new/" + b, &st) == 0)
        let stampB = "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        let text = "\(SizeCache.header)\n2 \(stampB) 3 \(b)\n4 \(stampA) 5 \(a)\n9 1.0 9 gone.host\n4 \(stampA) 6 \(a)\n"
        writeFile(f.root + "/" + SizeCache.fileName, Array(text.utf8))
        let md = try Maildrop.open(path: f.root)
        #expect(md.statistics.sizesFromCache == 2)
        #expect(md.statistics.messagesRead == 0)
        #expect(md.messages.map(\.size) == [6, 3])
        #expect(md.statistics.cacheWritten)  // "gone.host" dropped
        md.close()
        let written = String(decoding: fileBytes(f.root + "/" + SizeCache.fileName) ?? [], as: UTF8.self)
        #expect(written == "\(SizeCache.header)\n4 \(stampA) 6 \(a)\n2 \(stampB) 3 \(b)\n")
    }

    // MARK: seen names

    @Test func seenNamesAgreeWithASetOfOctets() {
        var rng = SplitMix64(seed: 1939)
        let alphabet: [String] = ["1700000000.M1P1.host", "a", "é", "e\u{301}", "", "x:2,S", "b"]
        for round in 0..<300 {
            var seen = SeenNames()
            var reference = Set<ByteName>()
            if round % 3 == 0 { seen.reserveCapacity(Int(rng.next() % 80)) }
            // Up to 3 × linearLimit names, so the move to the set happens mid-listing.
            for _ in 0..<Int(rng.next() % UInt64(3 * SeenNames.linearLimit)) {
                let name = alphabet[Int(rng.next() % UInt64(alphabet.count))] + String(rng.next() % 50)
                #expect(seen.insert(name) == reference.insert(ByteName(name)).inserted, "\(name)")
            }
            #expect(seen.count == reference.count)
        }
        var seen = SeenNames()
        #expect(seen.insert("caf\u{E9}") && seen.insert("cafe\u{301}"))  // canonically equal: two names
        #expect(!seen.insert("caf\u{E9}") && !seen.insert("cafe\u{301}"))
    }

    @Test func quickHashDependsOnEveryOctet() {
        let name = Array("1700000000.M123456P789.host".utf8)
        let h = name.withUnsafeBufferPointer { SeenNames.quickHash($0) }
        #expect(SeenNames.quickHash(String(decoding: name, as: UTF8.self)) == h)
        for i in name.indices {
            var other = name
            other[i] ^= 0x01
            #expect(other.withUnsafeBufferPointer { SeenNames.quickHash($0) } != h, "octet \(i)")
        }
        #expect(SeenNames.quickHash("a") != SeenNames.quickHash("a\u{0}"))  // the length counts
    }

    // MARK: word-at-a-time octet checks

    /// Every octet value at every position of buffers of 0 to 40 octets (the word loop and
    /// the tail), against the plain per-octet checks.
    @Test func wordChecksAgreeWithPerOctetChecks() {
        var wrong: [String] = []
        func check(_ bytes: [UInt8]) {
            bytes.withUnsafeBufferPointer { b in
                if Sys.isASCII(UnsafeRawBufferPointer(b)) != b.allSatisfy({ $0 < 0x80 }) { wrong.append("isASCII \(bytes)") }
                if MaildirName.printable(b) != b.allSatisfy({ $0 >= 0x21 && $0 <= 0x7E }) { wrong.append("printable \(bytes)") }
            }
        }
        for count in 0...40 {
            for position in 0..<max(count, 1) {
                for value in 0...255 {
                    var bytes = [UInt8](repeating: UInt8(ascii: "m"), count: count)
                    if count > 0 { bytes[position] = UInt8(value) }
                    check(bytes)
                }
            }
        }
        // Several bad octets in one word, and neighbours that borrow or carry.
        var rng = SplitMix64(seed: 3)
        for _ in 0..<20_000 {
            check((0..<Int(rng.next() % 24)).map { _ in
                [0x00, 0x20, 0x21, 0x7E, 0x7F, 0x80, 0xFF, UInt8(truncatingIfNeeded: rng.next())][Int(rng.next() % 8)]
            })
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(5))")
    }

    // MARK: the directory listing

    /// Names of every length a name can have (1 to 255 octets: every record size and padding),
    /// and names that are not UTF-8 (skipped), listed exactly.
    @Test func listingFindsEveryNameLength() throws {
        let temp = TempDirectory(prefix: "listing")
        var expected: Set<String> = []
        for length in 1...255 {
            let name = String(repeating: "n", count: length - 1) + String(length % 10)
            let fd = open(temp.path + "/" + name, O_CREAT | O_WRONLY, 0o600)
            #expect(fd >= 0)
            close(fd)
            expected.insert(name)
        }
        // "b" 0xFF: not UTF-8, so no String can name it; made from octets.
        var bad = Array((temp.path + "/b").utf8CString)
        bad.insert(CChar(bitPattern: 0xFF), at: bad.count - 1)
        let badfd = open(bad, O_CREAT | O_WRONLY, 0o600)
        #expect(badfd >= 0)
        close(badfd)
        let dir = open(temp.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(dir) }
        let listed = try Sys.listDirectory(dir, path: temp.path)
        #expect(Set(listed.map(\.name)) == expected)
        #expect(listed.count == expected.count)
        #expect(listed.allSatisfy { $0.type == UInt8(DT_REG) || $0.type == UInt8(DT_UNKNOWN) })
        // With the caller's scratch buffer (a login's), and with one too small to use: the same.
        for size in [Sys.directoryBufferBytes, 64 * 1024, 16] {
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
            defer { scratch.deallocate() }
            let again = try Sys.listDirectory(dir, path: temp.path, scratch: scratch)
            #expect(again.map(\.name) == listed.map(\.name), "scratch of \(size)")
        }
    }
}
