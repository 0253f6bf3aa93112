// swift-tools-version: 6.2
// Micro-benchmarks for the POP3 module (ARCHITECTURE.md convention 10: measure in release,
// track allocations per command as well as time). A package of its own, depending
// on the main one by path, so the server carries no benchmark dependencies.
//
// Run: `swift package --disable-sandbox benchmark` in this directory (see RESULTS.md).
import PackageDescription

let package = Package(
    name: "pop3d-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "pop3d", path: ".."),
        // Only the malloc interposer trait: it supplies the malloc counts on
        // Swift 6.3 without jemalloc. The default traits would also pull in
        // swift-runtime-interposer (ARC counting), which is not available here.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "POP3Benchmarks",
            dependencies: [
                .product(name: "POP3", package: "pop3d"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/POP3Benchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
