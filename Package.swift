// swift-tools-version: 6.2
// The module table of ARCHITECTURE.md is enforced here: a target can import only what
// its `dependencies` list names. SwiftPM checks this only when asked, so every build of the
// Makefile (and so CI) passes `--explicit-target-dependency-import-check error`: a target
// that imports a module of this package it does not list fails to build.
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .unsafeFlags(["-warnings-as-errors"], .when(configuration: .debug)),
    // Release builds skip the runtime exclusivity checks on class properties: on the
    // single-threaded loop they were ~7% of CPU per session (swift_beginAccess/AccessSet).
    // Debug builds, which run every test, keep them on to catch a violation.
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
    // Lets the generic encoder and session specialise for the glue's concrete sinks across
    // module boundaries instead of dispatching every small write through a witness table.
    .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
]

let package = Package(
    name: "pop3d",
    products: [
        .executable(name: "pop3d", targets: ["pop3d"]),
        .executable(name: "pop3bench", targets: ["pop3bench"]),
        .library(name: "Reactor", targets: ["Reactor"]),
        .library(name: "POP3", targets: ["POP3"]),
        .library(name: "POP3Server", targets: ["POP3Server"]),
        // For the fuzz targets (Fuzz/, a package of its own that depends on this one by path).
        .library(name: "ProxyProtocol", targets: ["ProxyProtocol"]),
        .library(name: "Maildrop", targets: ["Maildrop"]),
        .library(name: "Auth", targets: ["Auth"]),
        .library(name: "ByteCodec", targets: ["ByteCodec"]),
        .library(name: "Digests", targets: ["Digests"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: [.defaults, "YAML"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // Metrics (issue 13): swift-metrics is the instrumentation API the code calls;
        // swift-prometheus is the registry behind it and renders the exposition format.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // SystemPackage's `FilePath`, which swift-configuration's `FileProvider` takes: named
        // here because POP3Server imports it (swift-configuration requires 1.5.0 or later).
        .package(url: "https://github.com/apple/swift-system", from: "1.5.0"),
    ],
    targets: [
        // The only C: what Swift cannot call from Glibc (declarations behind _GNU_SOURCE, a
        // signal handler, headers Swift's Glibc module lacks: epoll, timerfd, eventfd),
        // libsystemd, OpenSSL and libxcrypt. Linked libraries are Debian's (-dev packages).
        .target(
            name: "CShim",
            linkerSettings: [
                .linkedLibrary("systemd"),
                .linkedLibrary("ssl"),
                .linkedLibrary("crypto"),
                .linkedLibrary("crypt"),
            ]
        ),
        // libpq for the SQL user database (issue 15): a system-library target, not CShim,
        // so that only the code that talks to PostgreSQL links libpq (and its GSSAPI/LDAP
        // dependencies); pop3bench and the other modules' tests do not.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // The one system call wrapper family (EINTR, EAGAIN, EBADF/EFAULT, errors with errno and
        // the call's name), shared by Reactor, Maildrop and Auth, which may not import each
        // other; Glibc only.
        .target(name: "SystemCalls", swiftSettings: strict),
        .target(
            name: "Reactor",
            dependencies: ["CShim", "SystemCalls", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The one base64 and hex codec (issue 16) and the hot paths' writer of integers' decimal
        // and hex digits (issue 17): Swift stdlib only, shared by the pure protocol modules, Auth,
        // the glue (and pop3bench through POP3's use).
        .target(name: "ByteCodec", swiftSettings: strict),
        // Digests and HMAC from OpenSSL's EVP (issue 16): one helper for Auth, Maildrop and
        // pop3bench, which may not import Auth.
        .target(name: "Digests", dependencies: ["CShim", "ByteCodec"], swiftSettings: strict),
        .target(name: "POP3", dependencies: ["ByteCodec"], swiftSettings: strict),
        // PROXY protocol v1/v2 header parser and encoder (HAProxy's doc/proxy-protocol.txt):
        // pure like POP3, Swift stdlib and ByteCodec's digit writer only.
        .target(name: "ProxyProtocol", dependencies: ["ByteCodec"], swiftSettings: strict),
        .target(name: "Maildrop", dependencies: ["CShim", "SystemCalls", "ByteCodec", "Digests"], swiftSettings: strict),
        .target(name: "Auth", dependencies: ["CShim", "SystemCalls", "ByteCodec", "Digests"], swiftSettings: strict),
        // The SQL user database (issue 15): libpq on the reactor. Its own module so that it
        // has unit tests against a throwaway PostgreSQL and the glue sees no C types.
        .target(name: "SQL", dependencies: ["CLibPQ", "Reactor", "Auth"], swiftSettings: strict),
        .target(
            name: "POP3Server",
            dependencies: [
                "CShim", "Reactor", "POP3", "Maildrop", "Auth", "ProxyProtocol", "SQL", "ByteCodec",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "pop3d",
            dependencies: [
                "POP3Server",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "pop3bench",
            dependencies: [
                "Reactor", "POP3", "ProxyProtocol", "ByteCodec", "Digests",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strict
        ),
        // What several test targets share (SplitMix64, feeding bytes in pieces, temporary
        // folders, throwaway TLS certificates, running a command, a log recorder): a plain target
        // under Tests/, in no product.
        .target(
            name: "TestSupport",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ReactorTests",
            dependencies: ["Reactor", "CShim", "SystemCalls", "TestSupport", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(name: "SystemCallsTests", dependencies: ["SystemCalls"], swiftSettings: strict),
        .testTarget(name: "POP3Tests", dependencies: ["POP3", "ByteCodec", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "ByteCodecTests", dependencies: ["ByteCodec"], swiftSettings: strict),
        .testTarget(name: "DigestsTests", dependencies: ["Digests", "ByteCodec"], swiftSettings: strict),
        .testTarget(name: "ProxyProtocolTests", dependencies: ["ProxyProtocol", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "MaildropTests", dependencies: ["Maildrop", "CShim", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "SQLTests", dependencies: ["SQL", "Reactor", "Auth"], swiftSettings: strict),
        .testTarget(name: "AuthTests", dependencies: ["Auth", "ByteCodec", "Digests"], swiftSettings: strict),
        // The glue's in-process harness runs a real loop and TLS client (Reactor), reads the
        // service's pools (Auth), names POP3's client workarounds (POP3) and maps the scoreboard
        // (CShim).
        .testTarget(
            name: "POP3ServerTests",
            dependencies: [
                "POP3Server", "Reactor", "Auth", "POP3", "CShim", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Properties that span two modules which may not import each other: the size
        // Maildrop lists equals the octets POP3's encoder sends (issue 10, item 1).
        .testTarget(name: "StorageProtocolTests", dependencies: ["Maildrop", "POP3", "TestSupport"], swiftSettings: strict),
        // End-to-end tests start the built binaries with real clients: Tests/e2e (pytest).
    ]
)
