/// How a mag lays out its voxels, in terms every format shares: what `MagStores.create` makes,
/// and what a copy keeps or changes. Blocks and files are cubes (a Zarr3 chunk and shard).
public struct MagLayout: Hashable, Sendable {
    /// How blocks are encoded.
    public enum Compression: Hashable, Sendable {
        case none
        /// What wkfs writes when asked to compress (LZ4HC in WKW, zstd in Zarr3).
        case standard
        /// Another compression a mag already has, by its format's name for it (WKW's "LZ4"):
        /// kept by a copy within the format, `standard` in any other.
        case other(String)
    }

    public var voxelType: VoxelType
    public var channels: Int
    /// Voxels per block (chunk) edge.
    public var blockEdge: Int
    /// Blocks per data file (shard) edge.
    public var fileBlocks: Int
    public var compression: Compression
    /// What a voxel of a missing block or data file holds: one element (channel) as
    /// little-endian bytes. Zeros, unless a Zarr3 array says otherwise (`fill_value`); a format
    /// without a fill value (WKW) holds zeros only.
    public var fill: [UInt8]

    public init(voxelType: VoxelType, channels: Int, blockEdge: Int, fileBlocks: Int, compression: Compression, fill: [UInt8]? = nil) {
        self.voxelType = voxelType
        self.channels = channels
        self.blockEdge = blockEdge
        self.fileBlocks = fileBlocks
        self.compression = compression
        self.fill = fill ?? [UInt8](repeating: 0, count: voxelType.size)
    }

    /// Voxels per data file edge (`cubeLength` in the properties of a WKW mag).
    public var fileEdge: Int { blockEdge * fileBlocks }
    public var isCompressed: Bool { compression != .none }
    public var fillsWithZero: Bool { fill.allSatisfy { $0 == 0 } }
}
