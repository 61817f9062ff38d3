import Formats

/// `copy` between formats (WKW -> Zarr3, Zarr3 -> WKW, Zarr3 -> Zarr3): the voxels of each
/// mag read through the source's store and written through the target's, file by file of the
/// target. WKW -> WKW copies keep their own faster path (`Dataset.copy`).
extension Dataset {
    /// How a converted mag is stored.
    struct ConvertedMag: Sendable {
        var format: DataFormat
        /// Voxels per block (chunk) edge, and blocks per file (shard) edge.
        var block: Int
        var fileBlocks: Int
        var compress: Bool
        var voxelType: VoxelType
        var channels: Int

        var fileEdge: Int { block * fileBlocks }

        /// The layout of a copy of `source` under `options`.
        init(_ source: any MagStore, format: DataFormat, options: CopyOptions) throws {
            self.format = format
            let b = source.blockShape, f = source.fileShape
            let cubic = b.x == b.y && b.y == b.z && f.x == f.y && f.y == f.z
            block = options.blockLength ?? (cubic ? b.x : 32)
            fileBlocks = options.fileLength ?? (cubic ? f.x / b.x : 32)
            compress = options.compress ?? source.isCompressed
            voxelType = source.voxelType
            channels = source.channels
            switch format {
            case .wkw:
                do {
                    _ = try wkwHeader()
                } catch let error as FormatError {
                    throw DatasetError(.invalidArgument, "block and file length", error.reason)
                }
            case .zarr3:
                if let problem = Zarr3Array.shapeProblem(chunk: Vec3(repeating: block), shard: Vec3(repeating: fileEdge)) {
                    throw DatasetError(.invalidArgument, "chunk and shard shape", problem)
                }
            }
        }

        func wkwHeader() throws -> WKWHeader {
            try WKWHeader(
                blockLength: block, fileLength: fileBlocks, blockType: compress ? .lz4hc : .raw, voxelType: voxelType, channels: channels)
        }

        /// Opens the target mag an interrupted copy made, or creates it.
        func openOrCreate(_ path: String, size: Vec3) throws -> any BlockWritableStore {
            switch format {
            case .wkw:
                let header = try wkwHeader()
                if let existing = try? MagDirectory.open(path), existing.header == header { return existing }
                return try MagDirectory.create(path, header: header)
            case .zarr3:
                if let existing = try? Zarr3Array.open(path), existing.chunkShape == Vec3(repeating: block),
                    existing.fileShape == Vec3(repeating: fileEdge), existing.isCompressed == compress
                {
                    return existing
                }
                return try Zarr3Array.create(
                    path, voxelType: voxelType, channels: channels, chunk: Vec3(repeating: block), shard: Vec3(repeating: fileEdge),
                    compress: compress, size: size)
            }
        }
    }

    /// The target files (of edge `fileEdge`) that meet a source data file inside `bounds`.
    static func convertedFiles(_ source: any MagStore, fileEdge: Int, bounds: Box) throws -> [Vec3] {
        var result = Set<Vec3>()
        for index in try source.dataFiles() {
            guard let part = Box(offset: index * source.fileShape, size: source.fileShape).intersection(bounds) else { continue }
            result.formUnion(part.cellRange(Vec3(repeating: fileEdge)).positions)
        }
        return result.sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
    }

    /// Decoded bytes read and written at once while converting.
    static let convertSlabLimit = 256 << 20

    /// Copies `files` of the target grid from `source` into `target`, each in z-slabs of whole
    /// blocks up to `convertSlabLimit`; slabs of zeros are not written (they read as zeros).
    static func convert(_ files: [Vec3], from source: any MagStore, to target: any BlockWritableStore, done: () throws -> Void) throws {
        let edge = target.fileShape
        let v = source.voxelBytes
        let plane = edge.x * edge.y * v
        let thickness = max(target.blockShape.z, min(edge.z, convertSlabLimit / max(1, plane) / target.blockShape.z * target.blockShape.z))
        let buffer = LargeBuffer.allocate(byteCount: plane * thickness)
        defer { buffer.deallocate() }
        for index in files {
            let fileBox = Box(offset: index * edge, size: edge)
            var z = fileBox.offset.z
            while z < fileBox.end.z {
                let slab = Box(offset: Vec3(fileBox.offset.x, fileBox.offset.y, z), size: Vec3(edge.x, edge.y, min(thickness, fileBox.end.z - z)))
                let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(slab.voxelCount * v)])
                try source.read(slab, into: bytes)
                if !RegionCopy.isZero(slab, voxelSize: v, in: bytes.baseAddress!, layout: slab) {
                    try target.writeRegion(slab, from: UnsafeRawBufferPointer(bytes))
                }
                z = slab.end.z
            }
            try done()
        }
    }
}
