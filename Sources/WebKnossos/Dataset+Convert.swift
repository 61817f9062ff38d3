import Formats

/// `copy` between formats (WKW -> Zarr3, Zarr3 -> WKW, Zarr3 -> Zarr3): the voxels of each
/// mag read through the source's store and written through the target's, file by file of the
/// target. Copies within a format that copies data files (WKW -> WKW) keep their own faster path
/// (`Dataset.copy`).
extension Dataset {
    /// How a copied mag is stored: its format and its layout, as that format records it.
    struct CopyTarget: Sendable {
        var format: DataFormat
        var layout: MagLayout
        /// A Zarr3 copy of a Zarr3 array without options is an array exactly like it (chunks,
        /// shards, codecs, key encoding, fill value), which a `layout` cannot always say
        /// (non-cubic chunks, blosc, gzip).
        var template: Zarr3Array?

        var fileEdge: Int { layout.fileEdge }

        /// The target of a copy of `source` under `options`: the source's layout where the options
        /// leave it (32³ blocks, 32 per file edge, where its blocks or files are not cubes).
        init(_ source: any MagStore, format: DataFormat, options: CopyOptions) throws {
            self.format = format
            if format == .zarr3, options.blockLength == nil, options.fileLength == nil, options.compress == nil,
                let array = source as? Zarr3Array, array.dimensionCount == 4, array.writeProblem == nil
            {
                template = array
            }
            let kept = source.layout
            let requested = MagLayout(
                voxelType: source.voxelType, channels: source.channels,
                blockEdge: options.blockLength ?? kept?.blockEdge ?? 32,
                fileBlocks: options.fileLength ?? kept?.fileBlocks ?? 32,
                compression: options.compress.map { $0 ? .standard : .none } ?? kept?.compression ?? (source.isCompressed ? .standard : .none),
                fill: source.fillValue)
            do {
                layout = try MagStores.normalized(requested, for: format)
            } catch let error as FormatError {
                throw DatasetError(.invalidArgument, format == .wkw ? "block and file length" : "chunk and shard shape", error.reason)
            }
        }

        /// Opens the target mag an interrupted copy made, or creates it.
        func openOrCreate(_ path: String, size: Vec3) throws -> any BlockWritableStore {
            if let template { return try Zarr3Array.openOrCreate(path, like: template, size: size) }
            return try MagStores.openOrCreate(at: path, format: format, layout: layout, size: size)
        }
    }

    /// The target files (of edge `fileEdge`) that meet a source data file inside `bounds`; every
    /// file inside `bounds` when the target fills missing voxels with another value than the
    /// source (a Zarr3 array's fill value copied to WKW, which has none).
    static func convertedFiles(_ source: any MagStore, fileEdge: Int, bounds: Box, targetFill: [UInt8]) throws -> [Vec3] {
        if targetFill != source.fillValue {
            return bounds.cellRange(Vec3(repeating: fileEdge)).positions.sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
        }
        var result = Set<Vec3>()
        for index in try source.dataFiles() {
            guard let part = Box(offset: index * source.fileShape, size: source.fileShape).intersection(bounds) else { continue }
            result.formUnion(part.cellRange(Vec3(repeating: fileEdge)).positions)
        }
        return result.sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
    }

    /// Decoded bytes read and written at once while converting.
    static let convertSlabLimit = 256 << 20

    /// Copies the part inside `bounds` (the layer's box in this mag, what webknossos copies) of
    /// `files` of the target grid from `source` into `target`, each in z-slabs of whole blocks up
    /// to `convertSlabLimit`; slabs of zeros are not written where the target reads missing
    /// voxels as zeros. (Whole target files took 40 s for a layer of 20x24x12 voxels: a 1024^3
    /// shard read and checked in slabs of 256 MiB.)
    static func convert(
        _ files: [Vec3], from source: any MagStore, to target: any BlockWritableStore, bounds: Box, done: () throws -> Void
    ) throws {
        let edge = target.fileShape
        let v = source.voxelBytes
        let bz = target.blockShape.z
        for index in files {
            guard let region = Box(offset: index * edge, size: edge).intersection(bounds) else {
                try done()
                continue
            }
            let plane = region.size.x * region.size.y * v
            let thickness = max(bz, min(edge.z, convertSlabLimit / max(1, plane) / bz * bz))
            let buffer = LargeBuffer.allocate(byteCount: plane * min(region.size.z + bz, thickness))
            defer { buffer.deallocate() }
            var z = region.offset.z
            while z < region.end.z {
                // Slabs end on the blocks' grid, so no block is written by two of them.
                let end = min(region.end.z, (z / bz * bz) + thickness)
                let slab = Box(offset: Vec3(region.offset.x, region.offset.y, z), size: Vec3(region.size.x, region.size.y, end - z))
                let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(slab.voxelCount * v)])
                try source.read(slab, into: bytes)
                if !target.fillsWithZero || !RegionCopy.isZero(slab, voxelSize: v, in: bytes.baseAddress!, layout: slab) {
                    try target.writeRegion(slab, from: UnsafeRawBufferPointer(bytes))
                }
                z = end
            }
            try done()
        }
    }
}
