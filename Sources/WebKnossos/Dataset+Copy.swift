import Foundation
import WKW

/// `copy_dataset`: the same voxels under new block length, file length and compression.
extension Dataset {
    /// Options of a copy; nil keeps the source mag's value.
    public struct CopyOptions: Sendable {
        public var blockLength: Int?
        public var fileLength: Int?
        public var compress: Bool?

        public init(blockLength: Int? = nil, fileLength: Int? = nil, compress: Bool? = nil) {
            self.blockLength = blockLength
            self.fileLength = fileLength
            self.compress = compress
        }
    }

    /// Copies this dataset to `destination` (which must not hold a dataset). Symbolic-link layers
    /// become real layers. `progress` is called after each destination file with (done, total).
    @discardableResult
    public func copy(
        to destination: String, options: CopyOptions, progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }
    ) throws -> Dataset {
        // Open every mag first, so a broken source stops the copy before anything is created.
        var plans: [(layer: LayerProperties, mags: [(entry: MagProperties, source: MagDirectory, header: WKWHeader)])] = []
        for layer in properties.layers {
            let checked = try self.layer(layer.name)
            var mags: [(MagProperties, MagDirectory, WKWHeader)] = []
            for entry in checked.mags {
                let source = try MagDirectory.open(magPath(checked, entry))
                var header = source.header
                do {
                    header = try WKWHeader(
                        blockLength: options.blockLength ?? header.blockLength,
                        fileLength: options.fileLength ?? header.fileLength,
                        blockType: options.compress.map { $0 ? .lz4hc : .raw } ?? header.blockType,
                        voxelType: header.voxelType, channels: header.channels)
                } catch let error as WKWError {
                    throw DatasetError(.invalidArgument, options.blockLength.map { _ in "--block-len" } ?? "--file-len", error.reason)
                }
                mags.append((entry, source, header))
            }
            plans.append((checked, mags))
        }

        var copy = try Dataset.create(destination, voxelSize: properties.voxelSize, unit: properties.unit)
        var newProperties = properties
        newProperties.id = copy.properties.id
        newProperties.layers = []
        let total = plans.reduce(0) { sum, plan in
            sum + plan.mags.reduce(0) { $0 + Self.destinationFiles($1.source, $1.header, plan.layer, $1.entry).count }
        }
        var done = 0
        for (layer, mags) in plans {
            var newLayer = layer
            newLayer.mags = []
            try PathOps.makeDirectories(copy.layerPath(layer.name))
            for (entry, source, header) in mags {
                let target = try MagDirectory.create(copy.layerPath(layer.name) + "/" + entry.mag.shortName, header: header)
                for index in Self.destinationFiles(source, header, layer, entry) {
                    if header == source.header {
                        try source.copyFile(index, to: target)
                    } else if header.fileByteCount > Self.wholeFileCopyLimit {
                        // Too large to hold decoded: one layer of blocks at a time.
                        try target.writeFileBySlabs(index) { slab in try source.read(slab) }
                    } else {
                        let box = target.fileBox(index)
                        let voxels = try source.read(box)
                        // A missing file reads as zeros: an all-zero file need not be written.
                        if voxels.contains(where: { $0 != 0 }) { try target.write(box, bytes: voxels) }
                    }
                    done += 1
                    progress(done, total)
                }
                var newEntry = entry
                newEntry.cubeLength = header.fileEdge
                newEntry.path = layer.usesWkwResolutions && entry.path == nil ? nil : "./\(layer.name)/\(entry.mag.shortName)"
                newLayer.mags.append(newEntry)
            }
            newProperties.layers.append(newLayer)
        }
        try copy.replaceProperties(newProperties)
        return copy
    }

    /// Destination files up to this many decoded bytes are copied in one piece.
    static let wholeFileCopyLimit = 256 << 20

    /// The destination files (of a mag with `header`) that meet an existing source file inside the
    /// layer's bounding box, as the reference copies the bounding box.
    static func destinationFiles(_ source: MagDirectory, _ header: WKWHeader, _ layer: LayerProperties, _ entry: MagProperties) -> [Vec3] {
        if header == source.header { return source.fileIndices() }
        var result = Set<Vec3>()
        let edge = Vec3(repeating: header.fileEdge)
        let bounds = entry.mag.fromMag1(layer.boundingBox)
        for index in source.fileIndices() {
            guard let part = source.fileBox(index).intersection(bounds) else { continue }
            result.formUnion(part.cellRange(edge).positions)
        }
        return result.sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
    }
}
