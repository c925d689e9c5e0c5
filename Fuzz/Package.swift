// swift-tools-version:6.0
// The libFuzzer targets. A package of its own so that a plain `swift build` of
// the harness never tries to link them without libFuzzer's main (docs/design.md §9).
// Build: swift build -c release --sanitize fuzzer [--sanitize address]
// Run:   Fuzz/run TARGET (see Fuzz/README.md)
import PackageDescription

let harness = "xenblk-harness"

let package = Package(
    name: "xenblk-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: harness, path: ".."),
    ],
    targets: [
        // Bytes → trace (FuzzDecoder) → replay under $XENBLK_BACKEND; traps on any violation.
        .executableTarget(name: "FuzzReplay", dependencies: [
            .product(name: "FuzzSupport", package: harness),
            .product(name: "Backend", package: harness),
        ]),
        // The text trace reader on any bytes: an error or a trace whose canonical text reads back.
        .executableTarget(name: "FuzzTraceText", dependencies: [.product(name: "FuzzSupport", package: harness)]),
        // The pcap trace reader (libpcap) on any bytes: an error or a trace, never a crash or a hang.
        .executableTarget(name: "FuzzPcap", dependencies: [.product(name: "FuzzSupport", package: harness)]),
        // The block-trace importers on any bytes (a format and options, then a file):
        // an error, or a recording that replays clean (fixed; g2013 with indirect); never a crash or a hang.
        .executableTarget(name: "FuzzImport", dependencies: [.product(name: "Import", package: harness)]),
        // Ring request and response bytes in each ABI: decode and re-encode round-trip.
        .executableTarget(name: "FuzzRequestABI", dependencies: [.product(name: "FuzzSupport", package: harness)]),
    ],
    swiftLanguageModes: [.v6]
)
