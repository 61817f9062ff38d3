// swift-tools-version: 6.1
import PackageDescription

// Every Swift target gets the same strict settings (Swift 6 mode is the package default).
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "wkfs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "wkfs", targets: ["WKFSCommand"]),
        .library(name: "Formats", targets: ["Formats"]),
        .library(name: "WebKnossos", targets: ["WebKnossos"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    ],
    targets: [
        // C system libraries, found through pkg-config.
        .systemLibrary(
            name: "CLZ4", pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(
            name: "CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),
        // crc32c (Zarr3 shard indexes) from Intel's ISA-L.
        .systemLibrary(
            name: "CISAL", pkgConfig: "libisal",
            providers: [.apt(["libisal-dev"])]),
        // Chunks that other Zarr writers compressed with blosc or gzip.
        .systemLibrary(
            name: "CBlosc", pkgConfig: "blosc",
            providers: [.apt(["libblosc-dev"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CFUSE", pkgConfig: "fuse3",
            providers: [.apt(["libfuse3-dev"])]),
        // Linux calls Swift cannot make itself (the kernel headers only, no library).
        .systemLibrary(name: "CLinux"),

        // format -> dataset -> filesystem -> command line
        .target(
            name: "Formats",
            dependencies: ["CLZ4", "CZstd", "CISAL", "CBlosc", "CZlib", "CLinux", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strictSettings),
        .target(
            name: "WebKnossos",
            dependencies: ["Formats"],
            swiftSettings: strictSettings),
        .target(
            name: "WKFS",
            dependencies: ["WebKnossos", "Formats", "CFUSE"],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "WKFSCommand",
            dependencies: [
                "WKFS", "WebKnossos", "Formats",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings),

        .testTarget(name: "FormatsTests", dependencies: ["Formats"], swiftSettings: strictSettings),
        .testTarget(name: "WKFSTests", dependencies: ["WKFS"], swiftSettings: strictSettings),
        .testTarget(
            name: "WebKnossosTests", dependencies: ["WebKnossos", "Formats"],
            swiftSettings: strictSettings),
    ]
)
