/// A WKW mag directory as a `MagStore`, with the WKW fast paths behind the store's capabilities:
/// files copied byte for byte, raw blocks written in place, regions written a layer at a time.
extension MagDirectory: MagStore {
    public var format: DataFormat { .wkw }
    public var voxelType: VoxelType { header.voxelType }
    public var channels: Int { header.channels }
    public var blockShape: Vec3 { Vec3(repeating: header.blockLength) }
    public var fileShape: Vec3 { Vec3(repeating: header.fileEdge) }
    public var compressionName: String { header.blockType.description }
    public var isCompressed: Bool { header.blockType.isCompressed }
    public func dataFiles(problems: inout [FormatError]) -> [Vec3] { fileIndices(problems: &problems) }
    public func blockNumber(_ position: Vec3) -> Int { Morton.encode(position) }
    // A `zZ` or `yY` entry that is there but is no directory (a file, a link loop or to nothing)
    // is listed and fails when looked at: the cubes under it are lost, not absent.
    public func fileZs() throws -> [Int] { try numbered(path, "z") }
    public func fileYs(z: Int) throws -> [Int] { try numbered("\(path)/z\(z)", "y") }
    public func fileXs(y: Int, z: Int) throws -> [Int] { try numbered("\(path)/z\(z)/y\(y)", "x", ".wkw") }
    public func hasFilePlane(z: Int) throws -> Bool { try FileStatus.isDirectoryThere("\(path)/z\(z)") }
    public func hasFileRow(y: Int, z: Int) throws -> Bool { try FileStatus.isDirectoryThere("\(path)/z\(z)/y\(y)") }
    public var filesInPlaneDirectories: Bool { true }

    /// The numbers of the grid names in `directory`; none when it is not there.
    private func numbered(_ directory: String, _ prefix: Character, _ suffix: String = "") throws -> [Int] {
        guard try FileStatus.isDirectoryThere(directory) else { return [] }
        return try PathOps.listOrThrow(directory).compactMap { GridName.index($0, prefix, suffix) }.sorted()
    }
    public func openDataFile(_ index: Vec3) throws -> (any DataFile)? { try DataFileReader.open(self, index) }

    public var layout: MagLayout? { header.layout }

    public func describe() -> [(String, JSONValue)] {
        [
            ("blockLength", .int(Int64(header.blockLength))), ("fileLength", .int(Int64(header.fileLength))),
            ("cubeLength", .int(Int64(header.fileEdge))), ("blockType", .string(header.blockType.description.lowercased())),
        ]
    }

    public func describeLayout() -> [(String, JSONValue)] {
        [
            ("blockLength", .int(Int64(header.blockLength))),
            ("fileLength", .int(Int64(header.fileLength))),
            ("blockType", .string(header.blockType.description)),
        ]
    }

    /// Byte for byte (`copyFile`): `target` is a WKW mag with the same header.
    public func copyDataFile(_ index: Vec3, to target: any BlockWritableStore) throws {
        guard let destination = target as? MagDirectory else { preconditionFailure("copyDataFile needs a mag of the same format") }
        try copyFile(index, to: destination)
    }

    /// Small WKW files are read whole by programs that walk cubes (`cp -r`, `rsync`).
    public var readsAheadWholeFiles: Bool { true }

    public func refusingRepairs() -> MagDirectory {
        var mag = self
        mag.repairsDisabled = true
        return mag
    }
}

extension DataFileReader: DataFile {
    public func storedBytes(ofBlock n: Int) throws -> [UInt8]? { try storedBlock(n) }
}

extension MagDirectory: BlockWritableStore {
    public func writeRegion(_ box: Box, from source: UnsafeRawBufferPointer) throws { try write(box, from: source) }
    public func writeRegion(_ box: Box, from source: UnsafeRawBufferPointer, files: @escaping @Sendable (Vec3) -> Bool) throws {
        try write(box, from: source, files: files)
    }
    /// Raw files are patched block by block, compressed ones rebuilt a layer of blocks at a time.
    public var streamsLayers: Bool { true }
    public func writeRegion(_ box: Box, slabs: (Box) throws -> UnsafeRawPointer) throws { try write(box, slabs: slabs) }
    public var blocksHaveFixedPlaces: Bool { !header.blockType.isCompressed }
    public func newInPlaceFile(_ index: Vec3) throws -> any InPlaceFile { try PendingRawFile(mag: self, index: index) }
}

extension PendingRawFile: InPlaceFile {}

extension WKWHeader {
    /// The header of a mag with `layout`: `standard` compression is LZ4HC, `other` names a block
    /// type (its description, "LZ4").
    /// - Throws: `FormatError(.invalidArgument)` when WKW cannot hold the layout.
    public init(_ layout: MagLayout) throws {
        let blockType: BlockType =
            switch layout.compression {
            case .none: .raw
            case .standard: .lz4hc
            case .other(let name): BlockType.allCases.first { $0.isCompressed && $0.description == name } ?? .lz4hc
            }
        try self.init(
            blockLength: layout.blockEdge, fileLength: layout.fileBlocks, blockType: blockType, voxelType: layout.voxelType,
            channels: layout.channels)
    }

    /// The header's layout: LZ4HC is `standard`, LZ4 `other`.
    public var layout: MagLayout {
        let compression: MagLayout.Compression =
            switch blockType {
            case .raw: .none
            case .lz4hc: .standard
            case .lz4: .other(blockType.description)
            }
        return MagLayout(
            voxelType: voxelType, channels: channels, blockEdge: blockLength, fileBlocks: fileLength, compression: compression)
    }
}
