import Foundation
import Testing
@testable import Formats

/// A fresh temporary directory, removed by the caller.
func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "wkw-tests-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Deterministic pseudo-random bytes (a small LCG), so failures reproduce.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &* 6_364_136_223_846_793_005 &+ 1
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
}

/// Puts `bytes` (the voxels of `box`, C order) into `target`, which holds the voxels of `layout`.
func overlay(_ bytes: [UInt8], _ box: Box, onto target: inout [UInt8], layout: Box, voxelSize: Int) {
    bytes.withUnsafeBytes { source in
        target.withUnsafeMutableBytes { destination in
            RegionCopy.copy(box, voxelSize: voxelSize, from: source.baseAddress!, layout: box, to: destination.baseAddress!, layout: layout)
        }
    }
}

@Suite struct MortonTests {
    @Test func knownIndices() {
        let firstEight = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)]
        for (i, p) in firstEight.enumerated() {
            #expect(Morton.encode(Vec3(p.0, p.1, p.2)) == i)
            #expect(Morton.decode(i) == Vec3(p.0, p.1, p.2))
        }
        #expect(Morton.encode(Vec3(2, 0, 0)) == 8)
        #expect(Morton.encode(Vec3(29, 20, 3)) == 13029)
        #expect(Morton.decode(13029) == Vec3(29, 20, 3))
    }
}

@Suite struct HeaderTests {
    @Test func encodesLikeTheReference() throws {
        let header = try WKWHeader(blockLength: 32, fileLength: 32, blockType: .lz4hc, voxelType: .uint8, channels: 3)
        let bytes = header.encoded(dataOffset: header.dataFileDataOffset)
        #expect(Array(bytes[0..<8]) == [0x57, 0x4B, 0x57, 1, 0x55, 3, 1, 3])
        #expect(header.dataFileDataOffset == 16 + 8 * 32768)
        let (decoded, offset) = try WKWHeader.decode(bytes, path: "x")
        #expect(decoded == header)
        #expect(offset == header.dataFileDataOffset)
    }

    @Test(arguments: [
        ([0x58, 0x4B, 0x57, 1, 0x11, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], "magic"),
        ([0x57, 0x4B, 0x57, 2, 0x11, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], "version"),
        ([0x57, 0x4B, 0x57, 1, 0x11, 9, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], "block type"),
        ([0x57, 0x4B, 0x57, 1, 0x11, 1, 11, 1, 0, 0, 0, 0, 0, 0, 0, 0], "voxel type"),
        ([0x57, 0x4B, 0x57, 1, 0x11, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0], "voxel size"),
        ([0x57, 0x4B, 0x57, 1, 0x11, 1, 2], "16"),
    ])
    func rejectsBadHeaders(bytes: [UInt8], reason: String) {
        #expect {
            try WKWHeader.decode(bytes, path: "some/header.wkw")
        } throws: { error in
            let e = error as! FormatError
            return e.kind == .corrupt && e.description.contains("some/header.wkw") && e.description.contains(reason)
        }
    }

    @Test func refusesLengthsTheReferenceCannotHold() {
        #expect(throws: FormatError.self) { try WKWHeader(blockLength: 256, blockType: .raw, voxelType: .uint8) }
        #expect(throws: FormatError.self) { try WKWHeader(blockLength: 3, blockType: .raw, voxelType: .uint8) }
        #expect(throws: FormatError.self) { try WKWHeader(fileLength: 0, blockType: .raw, voxelType: .uint8) }
    }
}

@Suite struct RegionTests {
    static let cases: [(BlockType, VoxelType, Int)] = BlockType.allCases.flatMap { block in
        [(block, .uint8, 1), (block, .uint16, 3), (block, .float64, 1), (block, .int32, 2)]
    }

    @Test(arguments: cases)
    func unalignedWritesReadBack(blockType: BlockType, voxelType: VoxelType, channels: Int) throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let header = try WKWHeader(blockLength: 4, fileLength: 2, blockType: blockType, voxelType: voxelType, channels: channels)
        let mag = try MagDirectory.create(root + "/1", header: header)
        let vs = header.voxelSize

        // Two overlapping unaligned writes across file borders (files are 8³).
        let first = Box(offset: Vec3(3, 5, 6), size: Vec3(11, 7, 9))
        let second = Box(offset: Vec3(9, 2, 1), size: Vec3(6, 10, 8))
        let a = pseudoRandomBytes(first.voxelCount * vs, seed: 1)
        let b = pseudoRandomBytes(second.voxelCount * vs, seed: 2)
        try mag.write(first, bytes: a)
        try mag.write(second, bytes: b)

        // Expected content, computed voxel by voxel.
        let whole = Box(offset: .zero, size: Vec3(17, 17, 17))
        var expected = [UInt8](repeating: 0, count: whole.voxelCount * vs)
        for (box, data) in [(first, a), (second, b)] {
            for p in box.positions {
                let src = ((p.z - box.offset.z) * box.size.y + (p.y - box.offset.y)) * box.size.x + (p.x - box.offset.x)
                let dst = (p.z * whole.size.y + p.y) * whole.size.x + p.x
                expected.replaceSubrange((dst * vs)..<((dst + 1) * vs), with: data[(src * vs)..<((src + 1) * vs)])
            }
        }
        #expect(try mag.read(whole) == expected)
        #expect(try MagDirectory.open(root + "/1").read(whole) == expected)
        // Files are full length (raw) or end at their jump table's last entry (compressed).
        for index in mag.fileIndices() { try mag.verifyFile(index) }
        if blockType == .raw {
            let size = try FileManager.default.attributesOfItem(atPath: mag.filePath(Vec3(1, 1, 1)))[.size] as! Int
            #expect(size == header.rawFileLength)
        }
    }

    @Test func missingFilesReadAsZeros() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let mag = try MagDirectory.create(
            root + "/1", header: try WKWHeader(blockLength: 8, fileLength: 1, blockType: .lz4, voxelType: .uint16))
        #expect(try mag.read(Box(offset: Vec3(100, 3, 7), size: Vec3(5, 5, 5))) == [UInt8](repeating: 0, count: 250))
        #expect(mag.fileIndices().isEmpty)
    }

    @Test func refusesWrongSizesAndNegativeOffsets() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let mag = try MagDirectory.create(root + "/1", header: try WKWHeader(blockLength: 4, fileLength: 2, blockType: .raw, voxelType: .uint8))
        #expect(throws: FormatError.self) { try mag.write(Box(offset: .zero, size: Vec3(2, 2, 2)), bytes: [1, 2, 3]) }
        #expect(throws: FormatError.self) { try mag.write(Box(offset: Vec3(-1, 0, 0), size: Vec3(1, 1, 1)), bytes: [1]) }
        #expect(mag.fileIndices().isEmpty)
    }
}

@Suite struct CorruptionTests {
    /// A compressed mag with one written file, and the path of that file.
    func makeCompressed(_ root: String) throws -> (MagDirectory, String) {
        let mag = try MagDirectory.create(root + "/1", header: try WKWHeader(blockLength: 4, fileLength: 2, blockType: .lz4, voxelType: .uint8))
        try mag.write(Box(offset: .zero, size: Vec3(8, 8, 8)), bytes: pseudoRandomBytes(512, seed: 3))
        return (mag, mag.filePath(.zero))
    }

    func expectCorrupt(_ mag: MagDirectory, _ file: String, _ words: String) throws {
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        for attempt in [
            { _ = try mag.read(Box(offset: .zero, size: Vec3(8, 8, 8))) },
            { try mag.write(Box(offset: Vec3(1, 1, 1), size: Vec3(2, 2, 2)), bytes: [UInt8](repeating: 7, count: 8)) },
            { try mag.verifyFile(.zero) },
        ] {
            #expect {
                try attempt()
            } throws: { error in
                "\(error)".contains(file) && "\(error)".contains(words)
            }
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before, "a refused write must not change the file")
    }

    @Test func decreasingJumpTable() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (mag, file) = try makeCompressed(root)
        let handle = FileHandle(forUpdatingAtPath: file)!
        try handle.seek(toOffset: 16 + 8 * 3)
        try handle.write(contentsOf: [UInt8](repeating: 0, count: 8) + [0x10])
        try handle.close()
        try expectCorrupt(mag, file, "jump table")
    }

    @Test func invalidLZ4Data() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (mag, file) = try makeCompressed(root)
        let handle = FileHandle(forUpdatingAtPath: file)!
        try handle.seek(toOffset: UInt64(16 + 8 * 8))
        try handle.write(contentsOf: [UInt8](repeating: 0xFF, count: 24))
        try handle.close()
        try expectCorrupt(mag, file, "LZ4")
    }

    @Test func truncatedCompressedFile() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (mag, file) = try makeCompressed(root)
        let handle = FileHandle(forUpdatingAtPath: file)!
        try handle.truncate(atOffset: try handle.seekToEnd() - 5)
        try handle.close()
        try expectCorrupt(mag, file, "truncated")
    }

    @Test func truncatedRawFile() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let mag = try MagDirectory.create(root + "/1", header: try WKWHeader(blockLength: 4, fileLength: 2, blockType: .raw, voxelType: .uint8))
        try mag.write(Box(offset: .zero, size: Vec3(8, 8, 8)), bytes: pseudoRandomBytes(512, seed: 4))
        let file = mag.filePath(.zero)
        let handle = FileHandle(forUpdatingAtPath: file)!
        try handle.truncate(atOffset: 100)
        try handle.close()
        try expectCorrupt(mag, file, "truncated")
    }

    @Test func headerDisagreeingWithMag() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (mag, file) = try makeCompressed(root)
        let handle = FileHandle(forUpdatingAtPath: file)!
        try handle.seek(toOffset: 6)
        try handle.write(contentsOf: [7])  // voxel type int8, same size as the mag's uint8
        try handle.close()
        try expectCorrupt(mag, file, "header.wkw")
    }
}

@Suite struct SlabWriteTests {
    @Test(arguments: BlockType.allCases)
    func fileWrittenLayerByLayerReadsBack(blockType: BlockType) throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let header = try WKWHeader(blockLength: 4, fileLength: 4, blockType: blockType, voxelType: .uint16, channels: 2)
        let mag = try MagDirectory.create(root + "/1", header: header)
        let index = Vec3(1, 0, 2)
        let box = mag.fileBox(index)
        let expected = pseudoRandomBytes(box.voxelCount * header.voxelSize, seed: 9)
        var slabs: [Box] = []
        let written = try mag.writeFileBySlabs(index) { slab in
            slabs.append(slab)
            let start = (slab.offset.z - box.offset.z) * 16 * 16 * header.voxelSize
            return Array(expected[start..<(start + slab.voxelCount * header.voxelSize)])
        }
        #expect(written)
        #expect(slabs.count == 4 && slabs.allSatisfy { $0.size == Vec3(16, 16, 4) })
        #expect(try mag.read(box) == expected)
        try mag.verifyFile(index)
        // All zeros: nothing is written.
        #expect(try !mag.writeFileBySlabs(.zero) { [UInt8](repeating: 0, count: $0.voxelCount * header.voxelSize) })
        #expect(!FileManager.default.fileExists(atPath: mag.filePath(.zero)))
    }
}

@Suite struct RegionWriteTests {
    /// A partial overwrite across several compressed files, with every encoded block spilled to
    /// disk, keeps the old voxels around the region and reads back exactly.
    @Test(arguments: [0, 1 << 30])
    func partialOverwriteAcrossFiles(spillAbove: Int) throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let header = try WKWHeader(blockLength: 4, fileLength: 4, blockType: .lz4hc, voxelType: .uint16, channels: 2)
        let mag = try MagDirectory.create(root + "/1", header: header)
        let all = Box(offset: .zero, size: Vec3(40, 36, 40))
        var expected = pseudoRandomBytes(all.voxelCount * header.voxelSize, seed: 3)
        try mag.write(all, bytes: expected)
        let part = Box(offset: Vec3(5, 7, 3), size: Vec3(30, 20, 25))
        let new = pseudoRandomBytes(part.voxelCount * header.voxelSize, seed: 4)
        var slabs: [Box] = []
        try new.withUnsafeBytes { source in
            try mag.write(part, spillAbove: spillAbove) { slab in
                slabs.append(slab)
                return source.baseAddress! + (slab.offset.z - part.offset.z) * part.size.x * part.size.y * header.voxelSize
            }
        }
        #expect(slabs.first?.offset.z == 3 && slabs.allSatisfy { $0.size.z <= 4 && $0.size.x == 30 })
        overlay(new, part, onto: &expected, layout: all, voxelSize: header.voxelSize)
        #expect(try mag.read(all) == expected)
        for index in mag.fileIndices() { try mag.verifyFile(index) }
        // No temporary or spill file is left behind.
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: mag.path).filter { !$0.split(separator: "/").last!.hasSuffix(".wkw") && !$0.split(separator: "/").last!.hasPrefix("z") && !$0.split(separator: "/").last!.hasPrefix("y") }
        #expect(leftovers.isEmpty)
    }
}

@Suite struct LargeFileWriteTests {
    /// A data file large enough to be written past the page cache (`O_DIRECT`), with more encoded
    /// bytes than the 8 MiB write buffer and an unaligned start and end, reads back exactly, also
    /// after a partial overwrite that keeps most of its stored blocks.
    @Test func directWrittenFileReadsBack() throws {
        let root = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let header = try WKWHeader(blockLength: 32, fileLength: 32, blockType: .lz4, voxelType: .uint8)
        #expect(header.blocksPerFile * header.blockByteCount >= MagDirectory.directWriteSize)
        let mag = try MagDirectory.create(root + "/1", header: header)
        let all = Box(offset: Vec3(5, 7, 3), size: Vec3(260, 200, 180))
        var expected = pseudoRandomBytes(all.voxelCount, seed: 5)
        try mag.write(all, bytes: expected)
        let stored = try FileManager.default.attributesOfItem(atPath: mag.filePath(.zero))[.size] as! Int
        #expect(stored > header.dataFileDataOffset + (8 << 20))
        #expect(try mag.read(all) == expected)

        let part = Box(offset: Vec3(40, 30, 20), size: Vec3(33, 40, 50))
        let new = pseudoRandomBytes(part.voxelCount, seed: 6)
        try mag.write(part, bytes: new)
        overlay(new, part, onto: &expected, layout: all, voxelSize: 1)
        #expect(try MagDirectory.open(root + "/1").read(all) == expected)
        try mag.verifyFile(.zero)
    }
}

@Suite struct LZ4BlockTests {
    /// Each thread keeps its compression state from block to block. Every block must still decode
    /// on its own (no history from the blocks before), also after the state's window passed the
    /// 1 GiB mark where liblz4 clears its tables (16,384 resets of 64 KiB).
    @Test(arguments: [false, true])
    func keptStateCompressesEachBlockOnItsOwn(highCompression: Bool) throws {
        // Compressible blocks (runs, with a noisy byte every 16) and one of noise.
        let noise = pseudoRandomBytes(512, seed: 7)
        func compressible(_ k: Int) -> [UInt8] {
            (0..<512).map { i -> UInt8 in
                i % 16 == k ? noise[i] : UInt8((i / (k + 8)) % 5 * 50)
            }
        }
        let blocks: [[UInt8]] = (0..<7).map(compressible) + [noise]
        var scratch = [UInt8](repeating: 0, count: LZ4Block.bound(512))
        var decoded = [UInt8](repeating: 0, count: 512)
        for n in 0..<20_000 {
            let block = blocks[n % blocks.count]
            let count = block.withUnsafeBytes { source in
                scratch.withUnsafeMutableBytes { LZ4Block.compress(source, into: $0, highCompression: highCompression) }
            }
            let ok = scratch.withUnsafeBytes { stored in
                decoded.withUnsafeMutableBytes { LZ4Block.decompress(UnsafeRawBufferPointer(rebasing: stored[0..<count]), into: $0) }
            }
            try #require(ok, "block \(n) does not decode on its own")
            try #require(decoded == block, "block \(n) decodes to other bytes")
            if n % blocks.count < 7 { try #require(count < 400, "block \(n) did not compress: \(count) bytes") }
        }
    }
}
