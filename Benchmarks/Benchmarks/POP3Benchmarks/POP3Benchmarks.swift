import Benchmark

/// Entry point the BenchmarkPlugin's generated `main` calls. Every benchmark
/// reports time and malloc counts: allocations per command are part of the
/// results (DESIGN convention 10, issue 5).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal],
        warmupIterations: 3,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )
    registerCommandBenchmarks()
    registerEncoderBenchmarks()
    registerSessionBenchmarks()
}
