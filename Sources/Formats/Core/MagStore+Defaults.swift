/// What a format without the optional capabilities of `MagStore` and `BlockWritableStore`
/// does: correct through the common requirements, without a format's fast paths.
extension MagStore {
    /// The voxels covered by data file `index`.
    public func fileBox(_ index: Vec3) -> Box { Box(offset: index * fileShape, size: fileShape) }

    public var layout: MagLayout? {
        let b = blockShape, f = fileShape
        guard b.x == b.y, b.y == b.z, f.x == f.y, f.y == f.z else { return nil }
        return MagLayout(
            voxelType: voxelType, channels: channels, blockEdge: b.x, fileBlocks: f.x / b.x,
            compression: isCompressed ? .standard : .none, fill: fillValue)
    }

    public var fillValue: [UInt8] { [UInt8](repeating: 0, count: voxelType.size) }

    /// Whether missing blocks and data files read as zeros (the fill value is 0).
    public var fillsWithZero: Bool { fillValue.allSatisfy { $0 == 0 } }

    /// `count` voxels of the fill value (all channels), as a missing region holds them.
    public func fillBytes(voxels count: Int) -> [UInt8] {
        if fillsWithZero { return [UInt8](repeating: 0, count: count * voxelBytes) }
        let element = fillValue
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * voxelBytes)
        for _ in 0..<(count * channels) { bytes += element }
        return bytes
    }

    public func describe() -> [(String, JSONValue)] { [] }

    public func describeLayout() -> [(String, JSONValue)] {
        func ints(_ values: [Int]) -> JSONValue { .array(values.map { .int(Int64($0)) }) }
        return [("blockShape", ints(blockShape.array)), ("fileShape", ints(fileShape.array)), ("compression", .string(compressionName))]
    }

    /// Block by block: the stored blocks of the file become the new file's.
    public func copyDataFile(_ index: Vec3, to target: any BlockWritableStore) throws {
        guard let file = try openDataFile(index) else { return }
        try target.replaceFile(index, directories: nil, parallel: true) { n in
            guard let bytes = try file.storedBytes(ofBlock: n) else { return .zero }
            return .encoded(bytes)
        }
    }

    public var readsAheadWholeFiles: Bool { false }

    public func refusingRepairs() -> Self { self }

    /// Asks the kernel to read whole data files into the page cache in the background
    /// (`posix_fadvise` WILLNEED), in this order, until about `budget` bytes; missing files are
    /// skipped. Advice only: nothing waits for the disk but the opens.
    public func willNeed(files indices: [Vec3], budget: Int) {
        var asked = 0
        for index in indices where asked < budget {
            guard let file = try? OpenFile.openIfExists(filePath(index)), let size = try? file.size() else { continue }
            file.willNeed(0..<size)
            asked += size
        }
    }
}

extension BlockWritableStore {
    /// File by file: the part of `box` in each accepted data file is written as its own region.
    public func writeRegion(_ box: Box, from source: UnsafeRawBufferPointer, files include: @escaping @Sendable (Vec3) -> Bool) throws {
        guard !box.isEmpty, let base = source.baseAddress else { return }
        for index in box.cellRange(fileShape).positions where include(index) {
            guard let part = fileBox(index).intersection(box) else { continue }
            var bytes = [UInt8](repeating: 0, count: part.voxelCount * voxelBytes)
            bytes.withUnsafeMutableBytes { target in
                RegionCopy.copy(part, voxelSize: voxelBytes, from: base, layout: box, to: target.baseAddress!, layout: part)
            }
            try bytes.withUnsafeBytes { try writeRegion(part, from: $0) }
        }
    }

    public var streamsLayers: Bool { false }

    /// One layer of blocks at a time, each written as a region.
    public func writeRegion(_ box: Box, slabs slab: (Box) throws -> UnsafeRawPointer) throws {
        guard !box.isEmpty else { return }
        var z = box.offset.z
        while z < box.end.z {
            let next = min(box.end.z, (z / blockShape.z + 1) * blockShape.z)
            let part = Box(offset: Vec3(box.offset.x, box.offset.y, z), size: Vec3(box.size.x, box.size.y, next - z))
            try writeRegion(part, from: UnsafeRawBufferPointer(start: try slab(part), count: part.voxelCount * voxelBytes))
            z = next
        }
    }

    /// Each layer that holds data is written as a region.
    @discardableResult
    public func writeFileBySlabs(_ index: Vec3, voxels: (Box) throws -> [UInt8]) throws -> Bool {
        let file = fileBox(index)
        var anyData = false
        for z in stride(from: file.offset.z, to: file.end.z, by: blockShape.z) {
            let slab = Box(offset: Vec3(file.offset.x, file.offset.y, z), size: Vec3(file.size.x, file.size.y, min(blockShape.z, file.end.z - z)))
            let data = try voxels(slab)
            guard data.contains(where: { $0 != 0 }) else { continue }
            anyData = true
            try data.withUnsafeBytes { try writeRegion(slab, from: $0) }
        }
        return anyData
    }

    public var blocksHaveFixedPlaces: Bool { false }

    public func newInPlaceFile(_ index: Vec3) throws -> any InPlaceFile {
        throw FormatError(.invalidArgument, path: filePath(index), "blocks of a \(format) mag have no fixed places in their file")
    }
}
