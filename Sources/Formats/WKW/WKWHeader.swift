/// The 16-byte header found in `header.wkw` and at the start of every data file.
public struct WKWHeader: Hashable, Sendable {
    public static let byteCount = 16
    /// The largest power-of-two exponent the reference accepts for each length (2^7 = 128).
    public static let maxLengthLog2: UInt8 = 7

    /// log2 of the voxels per block edge (B).
    public var blockLengthLog2: UInt8
    /// log2 of the blocks per file edge.
    public var fileLengthLog2: UInt8
    public var blockType: BlockType
    public var voxelType: VoxelType
    /// Channels per voxel.
    public var channels: Int

    /// Creates a header; lengths must be powers of two from 1 to 128.
    public init(
        blockLength: Int = 32, fileLength: Int = 32, blockType: BlockType, voxelType: VoxelType,
        channels: Int = 1
    ) throws {
        guard let b = Self.log2(blockLength) else {
            throw FormatError(.invalidArgument, path: "", "block length \(blockLength) is not a power of two from 1 to 128")
        }
        guard let f = Self.log2(fileLength) else {
            throw FormatError(.invalidArgument, path: "", "file length \(fileLength) is not a power of two from 1 to 128")
        }
        guard channels >= 1, channels * voxelType.size <= 255 else {
            throw FormatError(.invalidArgument, path: "", "\(channels) channels of \(voxelType) do not fit in a WKW voxel (at most 255 bytes)")
        }
        self.blockLengthLog2 = b
        self.fileLengthLog2 = f
        self.blockType = blockType
        self.voxelType = voxelType
        self.channels = channels
    }

    private static func log2(_ n: Int) -> UInt8? {
        guard n >= 1, n <= 128, n & (n - 1) == 0 else { return nil }
        return UInt8(n.trailingZeroBitCount)
    }

    /// Voxels per block edge (B).
    public var blockLength: Int { 1 << Int(blockLengthLog2) }
    /// Blocks per file edge.
    public var fileLength: Int { 1 << Int(fileLengthLog2) }
    /// Voxels per file edge (F = B · blocks per file edge), `cubeLength` in the properties.
    public var fileEdge: Int { blockLength * fileLength }
    /// Blocks per file (N).
    public var blocksPerFile: Int { 1 << (3 * Int(fileLengthLog2)) }
    /// Bytes per voxel, all channels.
    public var voxelSize: Int { voxelType.size * channels }
    /// Bytes of one decoded block.
    public var blockByteCount: Int { voxelSize << (3 * Int(blockLengthLog2)) }
    /// Bytes of one decoded file (a raw cube).
    public var fileByteCount: Int { blockByteCount * blocksPerFile }

    /// The data offset written in a data file: 16 for raw, 16 + 8·N for compressed files.
    public var dataFileDataOffset: Int {
        blockType.isCompressed ? Self.byteCount + 8 * blocksPerFile : Self.byteCount
    }

    /// Length of a complete raw data file.
    public var rawFileLength: Int { Self.byteCount + fileByteCount }

    /// The 16 header bytes with the given data offset (0 for `header.wkw`).
    public func encoded(dataOffset: Int) -> [UInt8] {
        var bytes: [UInt8] = [0x57, 0x4B, 0x57, 1]  // "WKW", version 1
        bytes.append(fileLengthLog2 << 4 | blockLengthLog2)
        bytes.append(blockType.rawValue)
        bytes.append(voxelType.rawValue)
        bytes.append(UInt8(voxelSize))
        var offset = UInt64(dataOffset)
        for _ in 0..<8 {
            bytes.append(UInt8(truncatingIfNeeded: offset))
            offset >>= 8
        }
        return bytes
    }

    /// Decodes header bytes field by field.
    /// - Returns: the header and the data offset it holds.
    /// - Throws: `FormatError.corrupt` naming `path` when any field is invalid.
    public static func decode(_ bytes: [UInt8], path: String) throws -> (header: WKWHeader, dataOffset: Int) {
        func corrupt(_ why: String) -> FormatError { FormatError(.corrupt, path: path, "invalid WKW header: \(why)") }
        guard bytes.count >= byteCount else {
            throw corrupt("file is \(bytes.count) bytes long, a header needs 16")
        }
        guard bytes[0] == 0x57, bytes[1] == 0x4B, bytes[2] == 0x57 else {
            throw corrupt("magic is not 'WKW'")
        }
        guard bytes[3] == 1 else { throw corrupt("version \(bytes[3]) is not supported (only 1)") }
        let blockLog2 = bytes[4] & 0x0F
        let fileLog2 = bytes[4] >> 4
        guard blockLog2 <= maxLengthLog2, fileLog2 <= maxLengthLog2 else {
            throw corrupt("lengths byte 0x\(String(bytes[4], radix: 16)) gives a length above 128")
        }
        guard let blockType = BlockType(rawValue: bytes[5]) else {
            throw corrupt("unknown block type \(bytes[5])")
        }
        guard let voxelType = VoxelType(rawValue: bytes[6]) else {
            throw corrupt("unknown voxel type \(bytes[6])")
        }
        let voxelSize = Int(bytes[7])
        guard voxelSize > 0, voxelSize % voxelType.size == 0 else {
            throw corrupt("voxel size \(voxelSize) is not a multiple of \(voxelType) (\(voxelType.size) bytes)")
        }
        var dataOffset: UInt64 = 0
        for i in (8..<16).reversed() { dataOffset = dataOffset << 8 | UInt64(bytes[i]) }
        guard dataOffset <= UInt64(Int.max) else { throw corrupt("data offset \(dataOffset) is too large") }
        var header = try! WKWHeader(blockType: blockType, voxelType: voxelType, channels: 1)
        header.blockLengthLog2 = blockLog2
        header.fileLengthLog2 = fileLog2
        header.channels = voxelSize / voxelType.size
        return (header, Int(dataOffset))
    }
}
