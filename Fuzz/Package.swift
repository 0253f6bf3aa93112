// swift-tools-version: 6.2
// libFuzzer targets for every decoder that reads bytes from a client or a file (issue 16):
// a package of its own, depending on the main one by path (as Benchmarks/ does), so the
// server is never built with the fuzzer's instrumentation and carries no fuzzing code.
//
// Build and run: `make fuzz` (FUZZ_SECONDS per target, default 60), which runs
// `Fuzz/run.sh`; see Fuzz/README.md. The targets reach the internal parsers of Maildrop and
// Auth through `@testable import`, so the build passes `-enable-testing` with the sanitizers:
//
//     swift build -c release --package-path Fuzz \
//         -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing
//
// Each target's main.swift runs libFuzzer's driver (`LLVMFuzzerRunDriver`) from its own top-level
// code rather than the usual `-parse-as-library` with libFuzzer's `main`: SwiftPM links
// executables with `--defsym main=<module>_main`, which that recipe leaves undefined
// (swiftlang/swift-package-manager#4522).
import PackageDescription

let settings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

/// One executable per fuzz target; its corpus is `Corpus/<name>`.
func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: "pop3d") },
        path: "Sources/\(name)",
        swiftSettings: settings
    )
}

let package = Package(
    name: "pop3d-fuzz",
    dependencies: [
        .package(name: "pop3d", path: ".."),
    ],
    targets: [
        // Invariant checks that abort with a message (libFuzzer then saves the input).
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"], path: "Sources/FuzzSupport", swiftSettings: settings),
        .target(name: "CLibFuzzer", path: "Sources/CLibFuzzer"),
        // A byte stream driving a whole POP3.Session against an in-memory maildrop.
        fuzzTarget("fuzz-session", ["POP3", "ByteCodec"]),
        // Base64 (both codecs), PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256 messages.
        fuzzTarget("fuzz-sasl", ["POP3", "Auth", "ByteCodec", "Digests"]),
        // The PROXY v1/v2 header parser: whole, byte by byte, encoder round trip.
        fuzzTarget("fuzz-proxy", ["ProxyProtocol"]),
        // Dovecot's passwd-file.
        fuzzTarget("fuzz-passwd", ["Auth"]),
        // Maildir file names (unique name, S=/W=, delivery time, UIDL).
        fuzzTarget("fuzz-maildir-name", ["Maildrop"]),
        // The files Maildrop reads from a Maildir: pop3d.sizes, pop3d.index, dovecot-uidlist,
        // courierpop3dsizelist, pop3d.uidls.
        fuzzTarget("fuzz-size-cache", ["Maildrop"]),
        fuzzTarget("fuzz-login-index", ["Maildrop"]),
        fuzzTarget("fuzz-dovecot-uidlist", ["Maildrop"]),
        fuzzTarget("fuzz-courier-sizelist", ["Maildrop"]),
        fuzzTarget("fuzz-imported-uidls", ["Maildrop"]),
    ]
)
