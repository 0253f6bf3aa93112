import Glibc

extension SizeCache {
    /// `pop3d.sizes` as a listing reads it (issue 17): the file's octets and one row per name,
    /// the names left in place (no `String`, no hashing per entry) and kept in octet order, so
    /// a listed name is found by a binary search of `memcmp`s. The file is written in that
    /// order (`serialize`), so reading it is one pass; a file in another order, or with a name
    /// twice, is sorted once and the last line of a name wins, as it did when every line was
    /// stored into a dictionary. A name that is not UTF-8 is kept as `String(decoding:)`
    /// spells it (U+FFFD for each bad sequence), which is what its key was before: a listed
    /// name, always valid UTF-8, finds exactly the entry it found then.
    struct Table {
        /// The file's octets, then the repaired spelling of any name that is not UTF-8.
        private(set) var storage: [UInt8]
        /// One per distinct name, in octet order of the names.
        private(set) var rows: [Row]
        /// Rows a listed message's file matched (`markUsed`).
        private(set) var usedCount = 0
        /// The variant of the wire-size rule the sizes were counted under.
        var rule: WireSizeRule

        struct Row {
            /// The name: `storage[nameStart ..< nameStart + nameCount]`, at least one octet.
            let nameStart: Int
            let nameCount: Int
            let entry: Entry
            /// A listed message's file matched this entry: it is kept when the cache is written.
            var used = false
        }

        /// No entries (no file, or one that cannot be used).
        init(rule: WireSizeRule) {
            storage = []
            rows = []
            self.rule = rule
        }

        private init(storage: [UInt8], rows: [Row], rule: WireSizeRule) {
            self.storage = storage
            self.rows = rows
            self.rule = rule
        }

        /// The table of `entries` (`SizeCache.entries`'s setter: tests, and the few entries a
        /// listing writes back).
        init(entries: [ByteName: Entry], rule: WireSizeRule) {
            var storage: [UInt8] = []
            var rows: [Row] = []
            rows.reserveCapacity(entries.count)
            for (name, entry) in entries {
                rows.append(Row(nameStart: storage.count, nameCount: name.string.utf8.count, entry: entry))
                storage.append(contentsOf: name.string.utf8)
            }
            self.init(storage: storage, rows: rows, rule: rule)
            sortKeepingLast()  // the names are distinct: a sort
        }

        /// The entries by name (`SizeCache.entries`).
        var dictionary: [ByteName: Entry] {
            var out: [ByteName: Entry] = [:]
            out.reserveCapacity(rows.count)
            for i in rows.indices { out[ByteName(name(i))] = rows[i].entry }
            return out
        }

        /// The octets of `row`'s name.
        func nameOctets(_ row: Int) -> ArraySlice<UInt8> {
            storage[rows[row].nameStart..<(rows[row].nameStart + rows[row].nameCount)]
        }

        /// The name of `row`, as a `String` (for writing the cache: a few names per login).
        func name(_ row: Int) -> String {
            let r = rows[row]
            return storage.withUnsafeBufferPointer {
                String(decoding: UnsafeBufferPointer(rebasing: $0[r.nameStart..<(r.nameStart + r.nameCount)]), as: UTF8.self)
            }
        }

        /// The row of `name` (compared as octets), or nil.
        func find(_ name: String) -> Int? {
            let found: Int?? = name.utf8.withContiguousStorageIfAvailable { find($0) }
            if let found { return found }
            return Array(name.utf8).withUnsafeBufferPointer { find($0) }
        }

        private func find(_ key: UnsafeBufferPointer<UInt8>) -> Int? {
            guard let k = key.baseAddress, !key.isEmpty, !rows.isEmpty else { return nil }
            return storage.withUnsafeBufferPointer { s -> Int? in
                guard let base = s.baseAddress else { return nil }
                return rows.withUnsafeBufferPointer { r -> Int? in
                    var low = 0, high = r.count
                    while low < high {
                        let mid = low + (high - low) / 2
                        let c = Table.compare(base + r[mid].nameStart, r[mid].nameCount, k, key.count)
                        if c == 0 { return mid }
                        if c < 0 { low = mid + 1 } else { high = mid }
                    }
                    return nil
                }
            }
        }

        /// Marks `row` as matched by a listed message (once per row: the listing looks each
        /// unique name up once).
        mutating func markUsed(_ row: Int) {
            guard !rows[row].used else { return }
            rows[row].used = true
            usedCount += 1
        }

        /// Octet order: the common prefix by `memcmp`, then the shorter first (`ByteName.<`).
        @inline(__always)
        static func compare(_ a: UnsafePointer<UInt8>, _ n: Int, _ b: UnsafePointer<UInt8>, _ m: Int) -> Int32 {
            let c = memcmp(a, b, Swift.min(n, m))
            if c != 0 { return c }
            return n < m ? -1 : (n > m ? 1 : 0)
        }

        /// Parses the whole file or nothing (the grammar of `SizeCache`): one pass over the
        /// octets in place.
        static func parse(_ bytes: [UInt8], rule: WireSizeRule = WireSizeRule()) -> Table? {
            var repairs: [UInt8] = []
            let parsed: (rows: [Row], sorted: Bool)? = bytes.withUnsafeBufferPointer { parse($0, rule: rule, repairs: &repairs) }
            guard let parsed else { return nil }
            var storage = bytes
            if !repairs.isEmpty { storage.append(contentsOf: repairs) }
            var table = Table(storage: storage, rows: parsed.rows, rule: rule)
            if !parsed.sorted { table.sortKeepingLast() }
            return table
        }

        private static func parse(
            _ b: UnsafeBufferPointer<UInt8>, rule: WireSizeRule, repairs: inout [UInt8]
        ) -> (rows: [Row], sorted: Bool)? {
            let newline = UInt8(ascii: "\n"), space = UInt8(ascii: " ")
            guard b.last == newline, let base = b.baseAddress else { return nil }
            // The header line, exactly.
            let header = Array(SizeCache.header(for: rule).utf8)
            guard b.count > header.count, b[header.count] == newline,
                  header.indices.allSatisfy({ b[$0] == header[$0] })
            else { return nil }
            // `oe-ns-eoh` adds a CRLF to a message without an empty line: 2 above the plain bound.
            let extra = rule.addsMissingHeaderEnd ? 2 : 0
            /// The "\n" ending the line that starts at `from` (there is one: the last octet is).
            func lineEnd(_ from: Int) -> Int {
                guard let p = memchr(base + from, Int32(newline), b.count - from) else { return b.count - 1 }
                return UnsafeRawPointer(p) - UnsafeRawPointer(base)
            }
            // One entry per line: counted first, so the rows are allocated once.
            var lines = 0
            var scan = header.count + 1
            while scan < b.count {
                lines += 1
                scan = lineEnd(scan) + 1
            }
            var rows: [Row] = []
            rows.reserveCapacity(lines)
            var sorted = true
            var at = header.count + 1
            /// The decimal number at `i` (1 to 18 digits, `MaildirName.parseDecimalPrefix`) that
            /// `delimiter` ends; `i` is left after the delimiter. One pass: the digits are read
            /// as the field's end is looked for (issue 17).
            func number(_ i: inout Int, _ delimiter: UInt8) -> Int? {
                guard let (v, end) = MaildirName.parseDecimalPrefix(b, i, b.count),
                      end < b.count, b[end] == delimiter
                else { return nil }
                i = end + 1
                return v
            }
            while at < b.count {
                // One line: `<fileSize> <sec>.<nsec> <crlfSize> <name>`; the name is last and may
                // hold spaces. Every line ends in "\n" (the last octet is one). Each number is
                // all digits up to its delimiter: a line with anything else (a second ".", a
                // sign, a 19th digit, a missing field) makes the file unusable.
                var i = at
                guard let fileSize = number(&i, space),
                      let sec = number(&i, UInt8(ascii: ".")),
                      let nsec = number(&i, space),
                      let crlf = number(&i, space),
                      // Checked as a W= field is: a cached size no CRLF conversion of a file of
                      // this size can give is garbage (and would reach STAT's sums).
                      crlf >= fileSize,
                      crlf <= CRLFSizeCounter.saturatingAdd(Maildrop.maxCRLFSize(fileSize: fileSize), extra)
                else { return nil }
                let end = lineEnd(i)
                guard i < end else { return nil }  // a name of at least one octet
                var nameStart = i
                var nameCount = end - nameStart
                if !Sys.isASCII(UnsafeRawBufferPointer(start: base + nameStart, count: nameCount)) {
                    let raw = UnsafeBufferPointer(rebasing: b[nameStart..<end])
                    if String(validating: raw, as: UTF8.self) == nil {
                        // Not UTF-8: kept under its repaired spelling, after the file's octets.
                        let repaired = String(decoding: raw, as: UTF8.self)
                        nameStart = b.count + repairs.count
                        nameCount = repaired.utf8.count
                        repairs.append(contentsOf: repaired.utf8)
                    }
                }
                // In order while every name is above the one before (repaired names, rare, are
                // not compared in place: they send the table to the sort).
                if sorted {
                    if nameStart >= b.count {
                        sorted = false
                    } else if let last = rows.last {  // in the file: no repaired row came yet
                        sorted = compare(base + last.nameStart, last.nameCount, base + nameStart, nameCount) < 0
                    }
                }
                rows.append(Row(nameStart: nameStart, nameCount: nameCount,
                                entry: Entry(fileSize: fileSize, mtimeSec: sec, mtimeNsec: nsec, crlfSize: crlf)))
                at = end + 1
            }
            return (rows, sorted)
        }

        /// Puts the rows in octet order of their names; of rows with the same name, the one of
        /// the last line stays (a dictionary filled line by line kept that one).
        private mutating func sortKeepingLast() {
            let rows = self.rows
            var order = Array(rows.indices)
            let kept: [Row] = storage.withUnsafeBufferPointer { s in
                guard let base = s.baseAddress else { return rows }
                order.sort { i, j in
                    let c = Table.compare(base + rows[i].nameStart, rows[i].nameCount, base + rows[j].nameStart, rows[j].nameCount)
                    return c != 0 ? c < 0 : i < j
                }
                var kept: [Row] = []
                kept.reserveCapacity(order.count)
                for (k, i) in order.enumerated() {
                    if k + 1 < order.count {
                        let next = rows[order[k + 1]]
                        if Table.compare(base + rows[i].nameStart, rows[i].nameCount, base + next.nameStart, next.nameCount) == 0 {
                            continue  // a later line has this name
                        }
                    }
                    kept.append(rows[i])
                }
                return kept
            }
            self.rows = kept
        }
    }
}
