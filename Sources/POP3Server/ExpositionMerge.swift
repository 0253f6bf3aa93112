/// Sums the Prometheus text expositions (format 0.0.4) of several workers into one, for the
/// master's `/metrics` (issue 13). Only what pop3d's own registry renders is expected —
/// `# HELP`/`# TYPE` lines, then `name{labels} value` samples — but any input is handled
/// without trapping: a line that does not parse is skipped.
///
/// Why summed, not labelled by worker: one scrape target gives host totals that need no
/// `sum by` in every query; the series count stays fixed whatever the worker count or the
/// number of restarts (a `worker` or `pid` label would add series at each restart); and a
/// worker's counters survive its exit (`retire`), so host counters never go down, which a
/// per-worker series would do at every restart (a counter reset in Prometheus' eyes).
struct ExpositionMerge {
    enum Kind { case counter, gauge, histogram, other }

    struct Family {
        var help: String?
        var kind: Kind = .other
        var typeLine: String?
        /// Sample keys (`name{labels}`) in first-seen order.
        var keys: [String] = []
    }

    /// Families by name, in first-seen order.
    private(set) var order: [String] = []
    private(set) var families: [String: Family] = [:]
    /// Summed values by sample key.
    private(set) var values: [String: Double] = [:]
    /// Family names left out (the master renders its own).
    let skip: Set<String>

    init(skipping skip: Set<String> = []) { self.skip = skip }

    /// Adds one exposition. `countersOnly`: only counters and histograms (a retired worker's
    /// gauges describe a process that is gone).
    mutating func add(_ text: [UInt8], countersOnly: Bool = false) {
        var family: String? = nil
        var kind = Kind.other
        var start = 0
        while start < text.count {
            var end = start
            while end < text.count && text[end] != 10 { end += 1 }
            let line = String(decoding: text[start..<end], as: UTF8.self)
            start = end + 1
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard parts.count >= 3 else { continue }
                let name = String(parts[2])
                family = name
                if skip.contains(name) { continue }
                if families[name] == nil {
                    families[name] = Family()
                    order.append(name)
                }
                if line.hasPrefix("# TYPE ") {
                    let type = parts.count > 3 ? String(parts[3]) : ""
                    kind = type == "counter" ? .counter : type == "gauge" ? .gauge : type == "histogram" ? .histogram : .other
                    if families[name]?.typeLine == nil {
                        families[name]?.typeLine = line
                        families[name]?.kind = kind
                    }
                } else if families[name]?.help == nil {
                    families[name]?.help = line
                }
                continue
            }
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "),
                  let value = Double(line[line.index(after: space)...]) else { continue }
            let key = String(line[..<space])
            // A sample belongs to the family of the TYPE line before it (histogram samples
            // carry _bucket/_sum/_count suffixes); one with no family is its own.
            let name: String
            if let family, Self.belongs(key, to: family) {
                name = family
            } else {
                name = String(key.prefix { $0 != "{" })
                kind = .other
                family = nil
            }
            if skip.contains(name) { continue }
            if countersOnly && kind != .counter && kind != .histogram { continue }
            if families[name] == nil {
                families[name] = Family()
                order.append(name)
            }
            if let old = values[key] {
                values[key] = old + value
            } else {
                values[key] = value
                families[name]?.keys.append(key)
            }
        }
    }

    private static func belongs(_ key: String, to family: String) -> Bool {
        guard key.hasPrefix(family) else { return false }
        let rest = key.dropFirst(family.count)
        return rest.isEmpty || rest.first == "{" || rest.hasPrefix("_bucket") || rest.hasPrefix("_sum") || rest.hasPrefix("_count")
    }

    /// The merged exposition, appended to `buffer`.
    func render(into buffer: inout [UInt8]) {
        for name in order {
            guard let f = families[name] else { continue }
            if let help = f.help { buffer.append(contentsOf: help.utf8); buffer.append(10) }
            if let type = f.typeLine { buffer.append(contentsOf: type.utf8); buffer.append(10) }
            for key in f.keys {
                buffer.append(contentsOf: key.utf8)
                buffer.append(32)
                buffer.append(contentsOf: Self.format(values[key] ?? 0).utf8)
                buffer.append(10)
            }
        }
    }

    /// Integers as integers (counts stay exact up to 2^53), anything else as Swift's shortest
    /// round-trip form, which Prometheus' parser reads (Go's ParseFloat).
    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 9_007_199_254_740_992 { return String(Int64(v)) }
        return "\(v)"
    }
}
