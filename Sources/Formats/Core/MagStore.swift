/// The on-disk formats of a mag.
public enum DataFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    case wkw
    case zarr3

    public var description: String { rawValue }

    /// The file that marks a directory as a mag of this format.
    public var markerFile: String {
        switch self {
        case .wkw: "header.wkw"
        case .zarr3: "zarr.json"
        }
    }
}

/// One mag on disk, whatever its format: a grid of data files (WKW files, Zarr3 shards), each a
/// grid of independently encoded blocks (chunks). Regions are in the mag's own voxels, their
/// bytes `(z, y, x, c)` in C order, little-endian.
public protocol MagStore: Sendable {
    var path: String { get }
    var format: DataFormat { get }
    var voxelType: VoxelType { get }
    var channels: Int { get }
    /// Voxels per edge of one block (chunk).
    var blockShape: Vec3 { get }
    /// Voxels per edge of one data file (shard).
    var fileShape: Vec3 { get }
    /// A short description of how blocks are stored ("LZ4HC", "zstd level 5", "raw").
    var compressionName: String { get }
    var isCompressed: Bool { get }

    /// The data files on disk, as positions in the file grid.
    /// - Throws: when a directory of the mag cannot be listed.
    func dataFiles() throws -> [Vec3]
    /// The path of data file `index` (which may not exist).
    func filePath(_ index: Vec3) -> String
    /// Reads a region into `destination`, which holds exactly its bytes.
    func read(_ box: Box, into destination: UnsafeMutableRawBufferPointer) throws
    /// Asks the kernel to start fetching the stored bytes of `box` (advice only).
    func prefetch(_ box: Box) throws
    /// Decodes every block of data file `index`.
    /// - Throws: `FormatError` naming the file and what is wrong with it.
    func verifyFile(_ index: Vec3) throws
}

extension MagStore {
    public var voxelBytes: Int { voxelType.size * channels }

    public func read(_ box: Box) throws -> [UInt8] {
        guard let count = box.byteCount(voxelSize: voxelBytes) else {
            throw FormatError(.invalidArgument, path: path, "region \(box) is too large")
        }
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(box, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    public func prefetch(_ box: Box) throws {}
}

extension MagDirectory: MagStore {
    public var format: DataFormat { .wkw }
    public var voxelType: VoxelType { header.voxelType }
    public var channels: Int { header.channels }
    public var blockShape: Vec3 { Vec3(repeating: header.blockLength) }
    public var fileShape: Vec3 { Vec3(repeating: header.fileEdge) }
    public var compressionName: String { header.blockType.description }
    public var isCompressed: Bool { header.blockType.isCompressed }
    public func dataFiles() throws -> [Vec3] { try fileIndicesOrThrow() }
}

extension Zarr3Array: MagStore {
    public var format: DataFormat { .zarr3 }
    public var blockShape: Vec3 { chunkShape }
    public var compressionName: String {
        let names = metadata.codecs.compression.compactMap { codec -> String? in
            switch codec {
            case .zstd(let level, _): "zstd level \(level)"
            case .blosc: "blosc"
            case .crc32c: nil
            }
        }
        return names.isEmpty ? "raw" : names.joined(separator: "+")
    }
    public var isCompressed: Bool { compressionName != "raw" }
}
