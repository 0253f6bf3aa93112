import Testing
@testable import POP3Server

/// The master's sum of its workers' expositions (ExpositionMerge.swift) and the shared
/// area they travel through (MetricsShare.swift).
struct MetricsMergeTests {
    static func text(_ s: String) -> [UInt8] { Array(s.utf8) }

    static let workerA = """
        # HELP pop3d_logins_total Login attempts.
        # TYPE pop3d_logins_total counter
        pop3d_logins_total{mechanism="user",result="ok"} 3
        pop3d_logins_total{mechanism="user",result="auth_failed"} 1
        # HELP pop3d_sessions Sessions now.
        # TYPE pop3d_sessions gauge
        pop3d_sessions{state="transaction"} 2.0
        # HELP pop3d_loop_turn_duration_seconds Turns.
        # TYPE pop3d_loop_turn_duration_seconds histogram
        pop3d_loop_turn_duration_seconds_bucket{le="0.001"} 10
        pop3d_loop_turn_duration_seconds_bucket{le="+Inf"} 12
        pop3d_loop_turn_duration_seconds_sum 0.5
        pop3d_loop_turn_duration_seconds_count 12
        # HELP pop3d_build_info Build.
        # TYPE pop3d_build_info gauge
        pop3d_build_info{version="0.1.0",swift="6.3"} 1.0

        """

    static let workerB = """
        # HELP pop3d_sessions Sessions now.
        # TYPE pop3d_sessions gauge
        pop3d_sessions{state="transaction"} 5.0
        # HELP pop3d_logins_total Login attempts.
        # TYPE pop3d_logins_total counter
        pop3d_logins_total{mechanism="user",result="ok"} 4
        # HELP pop3d_loop_turn_duration_seconds Turns.
        # TYPE pop3d_loop_turn_duration_seconds histogram
        pop3d_loop_turn_duration_seconds_bucket{le="0.001"} 1
        pop3d_loop_turn_duration_seconds_bucket{le="+Inf"} 3
        pop3d_loop_turn_duration_seconds_sum 0.25
        pop3d_loop_turn_duration_seconds_count 3

        """

    static func render(_ merge: ExpositionMerge) -> String {
        var out: [UInt8] = []
        merge.render(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    @Test func sumsEverySeriesAndKeepsOneHelpAndTypePerFamily() {
        var merge = ExpositionMerge(skipping: POP3Metrics.processFamilies)
        merge.add(Self.text(Self.workerA))
        merge.add(Self.text(Self.workerB))
        let out = Self.render(merge)
        let s = MetricsTests.samples(out)
        #expect(s[#"pop3d_logins_total{mechanism="user",result="ok"}"#] == 7)
        #expect(s[#"pop3d_logins_total{mechanism="user",result="auth_failed"}"#] == 1)
        #expect(s[#"pop3d_sessions{state="transaction"}"#] == 7)
        #expect(s[#"pop3d_loop_turn_duration_seconds_bucket{le="+Inf"}"#] == 15)
        #expect(s["pop3d_loop_turn_duration_seconds_sum"] == 0.75)
        #expect(s["pop3d_loop_turn_duration_seconds_count"] == 15)
        #expect(!out.contains("pop3d_build_info"))
        #expect(out.components(separatedBy: "# TYPE pop3d_logins_total counter").count == 2)
        #expect(out.components(separatedBy: "# HELP pop3d_sessions ").count == 2)
        // Integral values print as integers (exact counts), fractions as decimals.
        #expect(out.contains(#"pop3d_logins_total{mechanism="user",result="ok"} 7"# + "\n"))
        #expect(out.contains("pop3d_loop_turn_duration_seconds_sum 0.75\n"))
    }

    /// A retired worker keeps its counters and histograms, not its gauges.
    @Test func retiredWorkersKeepCountersOnly() {
        var retired = ExpositionMerge(skipping: POP3Metrics.processFamilies)
        retired.add(Self.text(Self.workerA), countersOnly: true)
        var retiredText: [UInt8] = []
        retired.render(into: &retiredText)
        var merge = ExpositionMerge(skipping: POP3Metrics.processFamilies)
        merge.add(retiredText)
        merge.add(Self.text(Self.workerB))
        let s = MetricsTests.samples(Self.render(merge))
        #expect(s[#"pop3d_logins_total{mechanism="user",result="ok"}"#] == 7)
        #expect(s[#"pop3d_sessions{state="transaction"}"#] == 5)
        #expect(s["pop3d_loop_turn_duration_seconds_count"] == 15)
    }

    /// Garbage, truncated lines and non-UTF-8 bytes are skipped, never a trap.
    @Test func hostileInputIsSkipped() {
        var merge = ExpositionMerge()
        merge.add([0xff, 0xfe, 0x0a, 0x23, 0x20, 0x54, 0x59, 0x50, 0x45, 0x0a])  // "\xff\xfe\n# TYPE\n"
        merge.add(Self.text("no_value\nx 1e400\n# TYPE\n# HELP a\nname{a=\"b\"} NaN\nplain 2\nplain 3\n"))
        let s = MetricsTests.samples(Self.render(merge))
        #expect(s["plain"] == 5)
    }

    /// A worker's snapshot through the shared area, as another process would read it.
    @Test func shareRoundTripsAndClears() throws {
        let share = try MetricsShare(creatingFor: 3)
        let reader = try MetricsShare(inheritedFD: share.fd)
        #expect(reader.workers == 3)
        #expect(reader.snapshot(worker: 2) == nil)
        let text = Self.text(Self.workerA)
        #expect(share.publish(worker: 2, text))
        #expect(reader.snapshot(worker: 2) == text)
        #expect(reader.snapshot(worker: 1) == nil)
        #expect(share.publish(worker: 2, Self.text(Self.workerB)))
        #expect(reader.snapshot(worker: 2) == Self.text(Self.workerB))
        // Too large: refused, the previous snapshot stays.
        #expect(!share.publish(worker: 2, [UInt8](repeating: 65, count: MetricsShare.slotBytes)))
        #expect(reader.snapshot(worker: 2) == Self.text(Self.workerB))
        #expect(!share.publish(worker: 4, text))
        #expect(!share.publish(worker: 0, text))
        reader.clear(worker: 2)
        #expect(share.snapshot(worker: 2) == nil)
    }

    /// A descriptor that is not a metrics area is refused.
    @Test func foreignDescriptorIsRefused() throws {
        let board = try Scoreboard(creatingFor: 2)
        #expect(throws: ConfigError.self) { try MetricsShare(inheritedFD: board.fd) }
    }
}
