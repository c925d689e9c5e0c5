// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "xenblk-harness",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Blkif", targets: ["Blkif"]),
        .library(name: "FakeXen", targets: ["FakeXen"]),
        .library(name: "Backend", targets: ["Backend"]),
        .library(name: "Oracle", targets: ["Oracle"]),
        .library(name: "Trace", targets: ["Trace"]),
        .library(name: "Harness", targets: ["Harness"]),
        .executable(name: "replay", targets: ["Replay"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    ],
    targets: [
        // Protocol facts only: ABI layouts, opcodes, statuses. No behaviour.
        .target(name: "Blkif"),
        // The environment the backend runs in: grant table, kernel heap, disk, xenstore.
        .target(name: "FakeXen", dependencies: [
            "Blkif",
            .product(name: "Collections", package: "swift-collections"),
        ]),
        // The system under test: blkback persistent grants and the seed's quirks.
        .target(name: "Backend", dependencies: ["Blkif", "FakeXen"]),
        .target(name: "Trace", dependencies: ["Blkif"]),
        .target(name: "Oracle", dependencies: ["Blkif", "FakeXen", "Trace"]),
        .target(name: "Harness", dependencies: ["Blkif", "FakeXen", "Backend", "Oracle", "Trace"]),
        .executableTarget(name: "Replay", dependencies: [
            "Harness", "Trace", "Backend",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "BlkifTests", dependencies: ["Blkif"]),
        .testTarget(name: "FakeXenTests", dependencies: ["FakeXen"]),
        .testTarget(name: "BackendTests", dependencies: ["Backend", "FakeXen", "Blkif"]),
        .testTarget(name: "HarnessTests", dependencies: ["Harness", "Oracle", "Trace", "Backend", "FakeXen", "Blkif"]),
        .testTarget(name: "TraceTests", dependencies: ["Trace", "Blkif"]),
    ],
    swiftLanguageModes: [.v6]
)
