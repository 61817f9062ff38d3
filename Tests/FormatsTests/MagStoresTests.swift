import Foundation
import Synchronization
import Testing
@testable import Formats

/// The format-neutral store API: layouts, the factory, and the default capabilities a format
/// without fast paths gets.
@Suite struct MagStoresTests {
    let layout = MagLayout(voxelType: .uint16, channels: 2, blockEdge: 8, fileBlocks: 4, compression: .standard)

    @Test func gridNames() {
        #expect(GridName.index("z12", "z") == 12)
        #expect(GridName.index("x0.raw", "x", ".raw") == 0)
        #expect(GridName.index("x07.raw", "x", ".raw") == nil)
        #expect(GridName.index("y", "y") == nil)
        #expect(GridName.index("y3", "z") == nil)
    }

    @Test func layoutsAsEachFormatRecordsThem() throws {
        #expect(try MagStores.normalized(layout, for: .wkw) == layout)
        var lz4 = layout
        lz4.compression = .other("LZ4")
        #expect(try MagStores.normalized(lz4, for: .wkw) == lz4)
        #expect(try MagStores.normalized(lz4, for: .zarr3).compression == .standard)
        var bad = layout
        bad.blockEdge = 3
        #expect(throws: FormatError.self) { try MagStores.normalized(bad, for: .wkw) }
    }

    @Test(arguments: DataFormat.allCases) func createdMagsHaveTheirLayout(format: DataFormat) throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let created = try MagStores.create(at: root + "/1", format: format, layout: layout, size: Vec3(64, 64, 64))
        let opened = try MagStores.open(format, root + "/1")
        #expect(created.layout == layout && opened.layout == layout)
        #expect(try MagStores.openOrCreate(at: root + "/1", format: format, layout: layout, size: .zero).layout == layout)
        // Another layout at the same place is refused, not written over.
        var other = layout
        other.fileBlocks = 2
        #expect(throws: FormatError.self) { try MagStores.openOrCreate(at: root + "/1", format: format, layout: other, size: .zero) }
    }

    /// Key directories of a Zarr3 array that another program removes while the array is listed
    /// are gone, not corrupt: listing never fails with "is not a directory" for them.
    @Test func zarrKeyDirectoriesRemovedDuringAListing() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var unsharded = layout
        unsharded.fileBlocks = 1
        let array = try MagStores.create(at: root + "/1", format: .zarr3, layout: unsharded, size: Vec3(64, 64, 64))
        let box = Box(offset: .zero, size: Vec3(64, 64, 8))
        let bytes = pseudoRandomBytes(box.voxelCount * array.voxelBytes, seed: 3)
        try bytes.withUnsafeBytes { try array.writeRegion(box, from: $0) }
        let written = try array.dataFiles().count
        // A writer that keeps making and removing empty key directories (x = 20, y = 0..<8).
        let stop = Atomic<Bool>(false)
        let churn = Thread {
            while !stop.load(ordering: .relaxed) {
                for y in 0..<8 { try? FileManager.default.createDirectory(atPath: root + "/1/c/0/20/\(y)", withIntermediateDirectories: true) }
                try? FileManager.default.removeItem(atPath: root + "/1/c/0/20")
            }
        }
        churn.start()
        defer { stop.store(true, ordering: .relaxed) }
        for _ in 0..<500 {
            #expect(try array.dataFiles().count == written)
        }
    }

    /// A copy of a data file between mags of one layout keeps its voxels, whichever way the
    /// format makes it; the in-place capability only where blocks have fixed places.
    @Test(arguments: DataFormat.allCases) func dataFileCopies(format: DataFormat) throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = try MagStores.create(at: root + "/a", format: format, layout: layout, size: Vec3(64, 64, 64))
        let target = try MagStores.create(at: root + "/b", format: format, layout: layout, size: Vec3(64, 64, 64))
        let box = Box(offset: Vec3(3, 5, 7), size: Vec3(20, 10, 9))
        let bytes = pseudoRandomBytes(box.voxelCount * source.voxelBytes, seed: 7)
        try bytes.withUnsafeBytes { try source.writeRegion(box, from: $0) }
        try source.copyDataFile(Vec3(0, 0, 0), to: target)
        #expect(try target.read(box) == bytes)
        #expect(!target.blocksHaveFixedPlaces)
    }

    /// The filtered region write and the whole-file write by layers, whether the format has its
    /// own (WKW) or takes the defaults (Zarr3).
    @Test(arguments: DataFormat.allCases) func regionAndFileWrites(format: DataFormat) throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let mag = try MagStores.create(at: root + "/1", format: format, layout: layout, size: Vec3(96, 32, 32))
        let box = Box(offset: Vec3(0, 0, 0), size: Vec3(64, 32, 32))
        let bytes = pseudoRandomBytes(box.voxelCount * mag.voxelBytes, seed: 3)
        try bytes.withUnsafeBytes { try mag.writeRegion(box, from: $0, files: { $0.x == 1 }) }
        #expect(try mag.dataFiles() == [Vec3(1, 0, 0)])
        let second = mag.fileBox(Vec3(1, 0, 0))
        var expected = [UInt8](repeating: 0, count: second.voxelCount * mag.voxelBytes)
        bytes.withUnsafeBytes { source in
            expected.withUnsafeMutableBytes { target in
                RegionCopy.copy(second, voxelSize: mag.voxelBytes, from: source.baseAddress!, layout: box, to: target.baseAddress!, layout: second)
            }
        }
        #expect(try mag.read(second) == expected)
        #expect(try mag.read(mag.fileBox(Vec3(0, 0, 0))).allSatisfy { $0 == 0 })
        let file = Vec3(2, 0, 0)
        let written = try mag.writeFileBySlabs(file) { slab in
            #expect(slab.size.z == mag.blockShape.z)
            return pseudoRandomBytes(slab.voxelCount * mag.voxelBytes, seed: UInt64(slab.offset.z))
        }
        #expect(written)
        let layers = try mag.read(mag.fileBox(file))
        let planeBytes = 32 * 32 * mag.voxelBytes * mag.blockShape.z
        #expect(Array(layers[0..<planeBytes]) == pseudoRandomBytes(planeBytes, seed: 0))
    }

    /// A fill value written into a new array's `zarr.json` reads back as the same bytes, for
    /// values JSON numbers cannot hold exactly too (NaN payloads, -0, integers above 2^63).
    @Test func fillValuesSurviveZarrJSON() throws {
        func bytes<T>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
        let cases: [(VoxelType, [UInt8])] = [
            (.uint8, [9]), (.int8, bytes(Int8(-3))), (.uint16, bytes(UInt16(65535))), (.int32, bytes(Int32.min)),
            (.uint64, bytes(UInt64.max)), (.int64, bytes(Int64.min)),
            (.float32, bytes(Float(1.5).bitPattern)), (.float32, bytes(Float.nan.bitPattern | 0x1234)),
            (.float32, bytes((-0.0 as Float).bitPattern)), (.float64, bytes(Double.infinity.bitPattern)),
            (.float64, bytes((-Double.infinity).bitPattern)), (.float64, bytes(Double(1e300).bitPattern)),
        ]
        for (type, fill) in cases {
            let json = Zarr3Array.metadataJSON(
                voxelType: type, channels: 1, size: Vec3(8, 8, 8), chunk: Vec3(8, 8, 8), shard: Vec3(8, 8, 8), compress: false, fill: fill)
            let metadata = try Zarr3Metadata.parse(Data(json.compact().utf8), path: "zarr.json")
            #expect(metadata.fillValue == fill, "\(type) \(fill): \(json.compact())")
        }
    }

    /// gzip chunks: what zlib wrote comes back; several members in a row (gzip allows it) are one
    /// chunk; data that ends early, holds more than a chunk or is not gzip is an error, not a
    /// short or cut chunk.
    @Test func gzipChunksDecodeExactlyOrFail() throws {
        let chunk = pseudoRandomBytes(4096, seed: 7).map { $0 & 0x0F }
        let whole = try chunk.withUnsafeBytes { try Zarr3Compression.gzipCompress($0, level: 6) }
        #expect(Array(whole.prefix(2)) == [0x1F, 0x8B])
        #expect(try whole.withUnsafeBytes { try Zarr3Compression.gzipDecompress($0, size: .exactly(4096)) } == chunk)
        let first = try chunk[..<1000].withUnsafeBytes { try Zarr3Compression.gzipCompress($0, level: 1) }
        let second = try chunk[1000...].withUnsafeBytes { try Zarr3Compression.gzipCompress($0, level: 9) }
        #expect(try (first + second).withUnsafeBytes { try Zarr3Compression.gzipDecompress($0, size: .exactly(4096)) } == chunk)
        for (bad, expected) in [(Array(whole.prefix(whole.count / 2)), 4096), (whole, 4095), (whole, 4097), (chunk, 4096), ([], 4096)] {
            #expect(throws: Zarr3CodecError.self) { try bad.withUnsafeBytes { try Zarr3Compression.gzipDecompress($0, size: .exactly(expected)) } }
        }
    }

    /// blosc chunks wkfs writes carry their settings in the header; any blosc reader decodes them.
    @Test func bloscChunksRoundTripWithEachShuffle() throws {
        // Runs of equal bytes, which every blosc compressor shortens.
        let chunk = (0..<8192).map { UInt8(truncatingIfNeeded: $0 / 64) }
        for shuffle in [Zarr3Metadata.Blosc.Shuffle.noshuffle, .shuffle, .bitshuffle] {
            for name in ["lz4", "zstd", "blosclz", "zlib"] {
                let settings = Zarr3Metadata.Blosc(compressor: name, level: 5, shuffle: shuffle, typeSize: nil, blockSize: 0)
                let stored = try chunk.withUnsafeBytes { try Zarr3Compression.bloscCompress($0, settings, elementSize: 4) }
                #expect(stored.count < chunk.count, "\(name) \(shuffle)")
                #expect(try stored.withUnsafeBytes { try Zarr3Compression.bloscDecompress($0, size: .exactly(8192)) } == chunk)
            }
        }
        let unknown = Zarr3Metadata.Blosc(compressor: "lzma", level: 5, shuffle: .shuffle, typeSize: 2, blockSize: 0)
        #expect(throws: Zarr3CodecError.self) { try chunk.withUnsafeBytes { try Zarr3Compression.bloscCompress($0, unknown, elementSize: 1) } }
    }

    /// zstd data of several frames in a row is one chunk (zarr-python reads it), also below
    /// another compressor, where its size is what its frames say.
    @Test func zstdFramesInARowAreOneChunk() throws {
        let chunk = (0..<512).map { UInt8(truncatingIfNeeded: $0 / 7) }
        let first = try chunk[..<200].withUnsafeBytes { try Zarr3Compression.zstdCompress($0, level: 3, checksum: true) }
        let second = try chunk[200...].withUnsafeBytes { try Zarr3Compression.zstdCompress($0, level: 1, checksum: false) }
        let both = first + second
        #expect(try both.withUnsafeBytes { try Zarr3Compression.zstdDecompress($0, size: .exactly(512)) } == chunk)
        #expect(try both.withUnsafeBytes { try Zarr3Compression.zstdDecompress($0, size: .atMost(4096)) } == chunk)
        #expect(throws: Zarr3CodecError.self) { try both.withUnsafeBytes { try Zarr3Compression.zstdDecompress($0, size: .exactly(511)) } }
        #expect(throws: Zarr3CodecError.self) { try both.withUnsafeBytes { try Zarr3Compression.zstdDecompress($0, size: .atMost(500)) } }
        #expect(throws: Zarr3CodecError.self) { try Array(both.dropLast(3)).withUnsafeBytes { try Zarr3Compression.zstdDecompress($0, size: .exactly(512)) } }
    }
}
