import Benchmark
import POP3

/// The dot-stuffing `MessageEncoder` over a 10 MiB message read in 64 KiB
/// chunks, as the glue streams RETR. One iteration = one whole message, so
/// MB/s = 10.49 MB × (iterations/s) of the throughput metric.
func registerEncoderBenchmarks() {
    let config = Benchmark.Configuration(warmupIterations: 2, maxDuration: .seconds(3), maxIterations: 200)
    Benchmark("MessageEncoder RETR 10 MiB realistic (64 KiB chunks)", configuration: config) { benchmark in
        encodeMessage(benchmark, Fixtures.bigMessage)
    }
    Benchmark("MessageEncoder RETR 10 MiB worst case (every line '.')", configuration: config) { benchmark in
        encodeMessage(benchmark, Fixtures.dotMessage)
    }
}

func encodeMessage(_ benchmark: Benchmark, _ message: [UInt8]) {
    var sink = ReusableSink()
    defer { sink.deallocate() }
    var encoder = MessageEncoder(bodyLines: nil)
    benchmark.startMeasurement()
    message.withUnsafeBytes { all in
        var offset = 0
        while offset < all.count {
            let end = min(offset + Fixtures.chunkSize, all.count)
            encoder.encode(UnsafeRawBufferPointer(rebasing: all[offset..<end]), out: &sink)
            offset = end
            // The reactor drains the queue between chunks (below its low-water mark).
            sink.flush()
        }
        encoder.finish(out: &sink)
    }
    benchmark.stopMeasurement()
    let expected = Fixtures.crlfSize(message)
    if encoder.contentOctets != expected {
        benchmark.error("encoded \(encoder.contentOctets) content octets, expected \(expected)")
    }
    blackHole(sink.lastByte)
}
