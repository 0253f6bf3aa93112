import Benchmark

/// Entry point the BenchmarkPlugin's generated `main` calls. Every benchmark
/// reports time and malloc counts: allocations per command are part of the
/// results (ARCHITECTURE.md convention 10, issue 5).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal],
        warmupIterations: 3,
        maxDuration: .seconds(1),
        maxIterations: 10_000
    )
    // The harness itself: malloc counts of an empty measured region. Subtract
    // this from every other benchmark's count (it was 16 on Linux, Swift 6.3.1).
    Benchmark("Baseline (empty measurement)") { benchmark in
        benchmark.startMeasurement()
        blackHole(benchmark.currentIteration)
        benchmark.stopMeasurement()
    }
    registerCommandBenchmarks()
    registerEncoderBenchmarks()
    registerSessionBenchmarks()
}
