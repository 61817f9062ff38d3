import Foundation
public import Formats

/// `copy_dataset`: the same voxels under new block length, file length and compression.
extension Dataset {
    /// Options of a copy; nil keeps the source mag's value.
    public struct CopyOptions: Sendable {
        public var blockLength: Int?
        public var fileLength: Int?
        public var compress: Bool?
        /// The format of every layer of the copy; nil keeps each layer's.
        public var format: DataFormat?

        public init(blockLength: Int? = nil, fileLength: Int? = nil, compress: Bool? = nil, format: DataFormat? = nil) {
            self.blockLength = blockLength
            self.fileLength = fileLength
            self.compress = compress
            self.format = format
        }
    }

    /// How one mag is copied.
    enum MagCopy {
        /// Within a format that copies data files (WKW to WKW): files copied as they are when the
        /// layout stays, else re-encoded file by file.
        case files(source: any MagStore, target: CopyTarget)
        /// Through the stores, into another format or layout.
        case converted(source: any MagStore, target: CopyTarget)
        /// Into an array like the source (`CopyTarget.template`): every data file's stored
        /// chunks copied as they are, also data outside the box (as webknossos copies a mag
        /// whose layout stays).
        case likeSource(source: any MagStore, target: CopyTarget)

        var target: CopyTarget {
            switch self {
            case .files(_, let target), .converted(_, let target), .likeSource(_, let target): target
            }
        }
    }

    /// Copies this dataset to `destination` (which must not hold a dataset). Symbolic-link layers
    /// become real layers. `progress` is called after each destination file with (done, total).
    /// - Parameter shard: this process's part of the files; the parts set up the destination one
    ///   after another (under its lock), and the last to finish marks the copy complete.
    @discardableResult
    public func copy(
        to destination: String, options: CopyOptions, shard: WorkShard = .whole,
        progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }
    ) throws -> Dataset {
        // Open every mag first, so a broken source stops the copy before anything is created.
        var plans: [(layer: LayerProperties, mags: [(entry: MagProperties, copy: MagCopy)])] = []
        for layer in properties.layers {
            let checked = try self.layer(layer.name)
            let sourceFormat = checked.format ?? .wkw
            let targetFormat = options.format ?? sourceFormat
            var mags: [(MagProperties, MagCopy)] = []
            for entry in checked.mags {
                let path = magPath(checked, entry)
                if sourceFormat == targetFormat && sourceFormat.copiesDataFiles {
                    let source = try MagStores.open(sourceFormat, path)
                    mags.append((entry, .files(source: source, target: try CopyTarget(source, format: targetFormat, options: options))))
                } else {
                    let source: any MagStore
                    do {
                        source = try Self.openStore(sourceFormat, path)
                    } catch {
                        throw DatasetError(.notFound, "layer '\(layer.name)' mag \(entry.mag.shortName)", "not a usable \(sourceFormat) mag", cause: error)
                    }
                    let target = try CopyTarget(source, format: targetFormat, options: options)
                    mags.append((entry, target.template != nil ? .likeSource(source: source, target: target) : .converted(source: source, target: target)))
                }
            }
            plans.append((checked, mags))
        }

        // The destination says it is a copy in progress (`unfinishedCopy`) from before its
        // properties exist until the last file is in place: an interrupted copy is reported by
        // `check` and finished by the same copy again. The parts of a sharded copy set it up one
        // after another, under the destination's lock.
        let destination = Self.normalize(destination)
        let marker = destination + "/" + Self.unfinishedCopyName
        // Refused before anything is written there (checked again under the lock).
        if let from = Self.unfinishedCopy(at: destination), Self.realPath(from) != Self.realPath(path) {
            throw DatasetError(.alreadyExists, destination, "holds an unfinished copy of \(from), not of \(path)")
        }
        if Self.unfinishedCopy(at: destination) == nil && FileManager.default.fileExists(atPath: destination + "/" + DatasetProperties.fileName) {
            throw DatasetError(.alreadyExists, destination, "a dataset already exists here")
        }
        do {
            try PathOps.makeDirectories(destination, inherit: false)
        } catch {
            throw DatasetError(.io, destination, "cannot create the destination directory", cause: error)
        }
        let (copy, targets) = try Self.withCopyLock(destination) { () throws -> (Dataset, [[any BlockWritableStore]]) in
            var copy: Dataset
            if let from = Self.unfinishedCopy(at: destination) {
                guard Self.realPath(from) == Self.realPath(path) else {
                    throw DatasetError(.alreadyExists, destination, "holds an unfinished copy of \(from), not of \(path)")
                }
                copy = try (try? Dataset.open(destination))
                    ?? Dataset.create(destination, voxelSize: properties.voxelSize, unit: properties.unit, allowing: Self.copyAllowed)
                _ = copy.removeStaleTemporaries()  // what the interrupted run left at the root
            } else {
                if FileManager.default.fileExists(atPath: destination + "/" + DatasetProperties.fileName) {
                    throw DatasetError(.alreadyExists, destination, "a dataset already exists here")
                }
                do {
                    try AtomicFile.write(marker, Array((Self.realPath(path) + "\n").utf8))
                } catch {
                    throw DatasetError(.io, marker, "cannot mark the copy as in progress", cause: error)
                }
                do {
                    copy = try Dataset.create(destination, voxelSize: properties.voxelSize, unit: properties.unit, allowing: Self.copyAllowed)
                } catch {
                    PathOps.remove(marker)
                    throw error
                }
            }
            var newProperties = properties
            newProperties.id = copy.properties.id
            newProperties.layers = plans.map { layer, mags in
                var newLayer = layer
                newLayer.dataFormat = (options.format ?? layer.format ?? .wkw).rawValue
                newLayer.mags = mags.map { entry, copy in
                    var newEntry = entry
                    newEntry.cubeLength = copy.target.format == .wkw ? copy.target.fileEdge : nil
                    // The copy's arrays are (c, x, y, z), also those of a 3-D source array.
                    newEntry.axisOrder = MagProperties.channelFirstAxes
                    newEntry.path = layer.usesWkwResolutions && entry.path == nil ? nil : "./\(layer.name)/\(entry.mag.shortName)"
                    return newEntry
                }
                return newLayer
            }
            try copy.replaceProperties(newProperties)
            // Every mag exists before any part copies into it (a mag the interrupted run made is
            // written on; its dead writers' temporary files go).
            var targets: [[any BlockWritableStore]] = []
            for (layer, mags) in plans {
                try PathOps.makeDirectories(copy.layerPath(layer.name))
                var stores: [any BlockWritableStore] = []
                for (entry, magCopy) in mags {
                    let targetPath = copy.layerPath(layer.name) + "/" + entry.mag.shortName
                    let target: any BlockWritableStore
                    do {
                        target = try magCopy.target.openOrCreate(targetPath, size: entry.mag.fromMag1(layer.boundingBox).end)
                        _ = try target.removeStaleTemporaries()
                    } catch {
                        throw DatasetError(.io, targetPath, "cannot create the mag", cause: error)
                    }
                    stores.append(target)
                }
                targets.append(stores)
                if let copied = try? copy.layer(layer.name), copied.format == .zarr3 {
                    do {
                        try copy.writeZarrGroups(copied)
                    } catch {
                        throw DatasetError(.io, copy.layerPath(layer.name), "cannot write the layer's zarr.json", cause: error)
                    }
                }
            }
            return (copy, targets)
        } failed: {
            // A setup that failed before the copy began leaves no lock behind.
            if Self.unfinishedCopy(at: destination) == nil { PathOps.remove(destination + "/" + Self.copyLockName) }
        }
        // This part's files of every mag, listed once (a listing reads every data file directory).
        let parts = try plans.map { plan in
            try plan.mags.map { mag -> [Vec3] in
                switch mag.copy {
                case .files(let source, let target): return shard.part(of: try Self.destinationFiles(source, target.layout, plan.layer, mag.entry))
                case .likeSource(let source, _):
                    return shard.part(of: try source.dataFiles().sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) })
                case .converted(let source, let target):
                    let bounds = mag.entry.mag.fromMag1(plan.layer.boundingBox)
                    return shard.part(of: try Self.convertedFiles(source, fileEdge: target.fileEdge, bounds: bounds, targetFill: target.layout.fill))
                }
            }
        }
        let total = parts.joined().reduce(0) { $0 + $1.count }
        var done = 0
        for (l, (_, mags)) in plans.enumerated() {
            for (m, (_, magCopy)) in mags.enumerated() {
                let target = targets[l][m], indices = parts[l][m]
                if case .likeSource(let source, _) = magCopy {
                    for index in indices {
                        try source.copyDataFile(index, to: target)
                        done += 1
                        progress(done, total)
                    }
                    continue
                }
                guard case .files(let source, let plan) = magCopy else {
                    guard case .converted(let source, _) = magCopy else { continue }
                    let bounds = mags[m].entry.mag.fromMag1(plans[l].layer.boundingBox)
                    try Self.convert(indices, from: source, to: target, bounds: bounds) {
                        done += 1
                        progress(done, total)
                    }
                    continue
                }
                let unchanged = plan.layout == source.layout
                if unchanged || target.fileBytes > Self.wholeFileCopyLimit {
                    for index in indices {
                        if unchanged {
                            try source.copyDataFile(index, to: target)
                        } else {
                            // Too large to hold decoded: one layer of blocks at a time.
                            try target.writeFileBySlabs(index) { slab in try source.read(slab) }
                        }
                        done += 1
                        progress(done, total)
                    }
                } else {
                    try Self.copyInGroups(indices, from: source, to: target) { count in
                        done += count
                        progress(done, total)
                    }
                }
            }
        }
        // Every data file was fsynced before its rename; the renames are synced with their rows.
        // A part notes that it is done; the one that finds every part done ends the copy.
        let notes = destination + "/" + Self.unfinishedCopyName + "."
        if !shard.isWhole { try shard.leaveNote(notes, "this part of the copy") }
        try Self.withCopyLock(destination) {
            guard shard.isWhole || shard.everyPartNoted(notes) else {
                // A part that noted while another ended the copy (every note was there) made
                // the lock file again by taking the lock: the copy is done, so it goes again.
                if !PathOps.exists(marker) { PathOps.remove(destination + "/" + Self.copyLockName) }
                return
            }
            PathOps.remove(marker)
            // The notes of these parts, and of parts of an earlier split of the same copy.
            PathOps.removeFiles(in: destination, prefix: Self.unfinishedCopyName + ".")
            // Every part is done: nobody waits for the lock any more.
            PathOps.remove(destination + "/" + Self.copyLockName)
            do {
                try PathOps.syncDirectoryOrThrow(copy.path)
            } catch {
                throw DatasetError(.io, copy.path, "cannot make the finished copy durable", cause: error)
            }
        }
        return copy
    }

    /// What may be in a copy's destination before its properties: the marker, the copy's lock,
    /// the properties lock of a file system without directory locks.
    static let copyAllowed: Set<String> = [unfinishedCopyName, copyLockName, lockFileName]
    /// The lock the parts of a copy take in turn to set up and to end it (not the properties
    /// lock, which setting up takes itself).
    static let copyLockName = ".wkfs-copy.lock"

    /// Runs `body` holding the copy lock of destination `path`; `failed` runs, still holding
    /// it, when `body` throws.
    static func withCopyLock<T>(_ path: String, _ body: () throws -> T, failed: () -> Void = {}) throws -> T {
        let lock: DirectoryLock
        do {
            lock = try DirectoryLock(lockFile: path + "/" + copyLockName)
        } catch {
            throw DatasetError(.io, path, "cannot take the copy's lock", cause: error)
        }
        defer { lock.unlock() }
        do {
            return try body()
        } catch {
            failed()
            throw error
        }
    }

    /// The file at a destination's root that marks a copy in progress; it holds the source path.
    static let unfinishedCopyName = ".wkfs-copy-in-progress"

    /// The source of an unfinished copy into this dataset; nil when it is not one.
    public func unfinishedCopy() -> String? { Self.unfinishedCopy(at: path) }

    static func unfinishedCopy(at path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path + "/" + Self.unfinishedCopyName) else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "an unknown source" : text
    }

    /// Destination files up to this many decoded bytes are copied in one piece.
    static let wholeFileCopyLimit = 256 << 20
    /// Decoded bytes of destination files read and written together.
    static let groupCopyLimit = 64 << 20

    /// Copies small destination files a group at a time: neighbouring files of one z (a row, or
    /// several rows, up to `groupCopyLimit`) are read from the source as one region and written
    /// with one region write. The source's data files are opened and planned once per group, not
    /// once per destination file, and the group's new files are fsynced together. A file whose
    /// voxels are all zero is not written (a missing file reads as zeros).
    /// - Parameter done: called after each group with the number of its files.
    static func copyInGroups(
        _ indices: [Vec3], from source: any MagStore, to target: any BlockWritableStore, done: (Int) throws -> Void
    ) throws {
        let voxelSize = target.voxelBytes
        // Files in (z, y, x) order; a group grows while its box stays in one z and under the limit.
        var groups: [(files: [Vec3], box: Box)] = []
        for index in indices.sorted(by: { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }) {
            let box = target.fileBox(index)
            if let last = groups.last, last.box.offset.z == box.offset.z,
                last.box.union(box).voxelCount * voxelSize <= groupCopyLimit
            {
                groups[groups.count - 1] = (last.files + [index], last.box.union(box))
            } else {
                groups.append(([index], box))
            }
        }
        let largest = groups.map { $0.box.voxelCount * voxelSize }.max() ?? 0
        let buffer = LargeBuffer.allocate(byteCount: largest)
        defer { buffer.deallocate() }
        for (group, box) in groups {
            let voxels = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(box.voxelCount * voxelSize)])
            try source.read(box, into: voxels)
            let withData = Set(group.filter { !RegionCopy.isZero(target.fileBox($0), voxelSize: voxelSize, in: voxels.baseAddress!, layout: box) })
            if !withData.isEmpty {
                try target.writeRegion(box, from: UnsafeRawBufferPointer(voxels), files: { withData.contains($0) })
            }
            try done(group.count)
        }
    }

    /// The destination files (of a mag with `layout`) that meet an existing source file inside the
    /// layer's bounding box, as the reference copies the bounding box.
    static func destinationFiles(_ source: any MagStore, _ layout: MagLayout, _ layer: LayerProperties, _ entry: MagProperties) throws -> [Vec3] {
        if layout == source.layout { return try source.dataFiles() }
        var result = Set<Vec3>()
        let edge = Vec3(repeating: layout.fileEdge)
        let bounds = entry.mag.fromMag1(layer.boundingBox)
        for index in try source.dataFiles() {
            guard let part = source.fileBox(index).intersection(bounds) else { continue }
            result.formUnion(part.cellRange(edge).positions)
        }
        return result.sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
    }
}
