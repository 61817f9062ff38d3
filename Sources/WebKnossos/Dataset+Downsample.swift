import Foundation
import Formats

/// `downsample`: the coarser mags of a layer, as webknossos 4.3.3's `Layer.downsample` builds
/// them (the same mags, names and voxels), each level from the one before, file by file of the
/// new mag, in the layer's format and the source mag's block and file lengths and compression.
extension Dataset {
    public struct DownsampleOptions: Sendable {
        /// The mag to start from; nil: the coarsest complete mag of the layer.
        public var from: Mag?
        /// The coarsest mag to build; nil: webknossos's default for the bounding box.
        public var coarsest: Mag?
        public var samplingMode: SamplingMode = .anisotropic
        /// nil: webknossos's default for the layer (mode for segmentation, median for color).
        public var interpolation: Interpolation?
        /// This process's part of each level.
        public var shard: WorkShard = .whole
        /// Only the first level (`shard` runs: every part of a level must be done before the next
        /// level starts, so each level is a run of its own).
        public var firstLevelOnly = false

        public init() {}
    }

    /// One level of a downsampling: `target` built from `source`.
    public struct DownsampleStep: Sendable {
        public var source: Mag
        public var target: Mag
    }

    /// The levels a downsampling of `layerName` builds, in order, and the interpolation it uses.
    public func downsamplePlan(_ layerName: String, _ options: DownsampleOptions) throws -> (steps: [DownsampleStep], interpolation: Interpolation) {
        let layer = try self.layer(layerName)
        guard layer.format != nil else {
            throw DatasetError(.unsupported, "layer '\(layerName)'", "data format '\(layer.dataFormat)' is not supported (wkfs reads wkw and zarr3)")
        }
        let complete = layer.mags.filter { !isUnfinishedDownsample(layer, $0) }
        if !options.shard.isWhole && options.from == nil {
            throw DatasetError(.invalidArgument, "part \(options.shard) of a downsampling",
                "needs the mag to start from: every part must build the same level, whatever the others have made so far")
        }
        let from: Mag
        if let chosen = options.from {
            guard let entry = layer.mag(chosen) else {
                throw DatasetError(.notFound, "mag \(chosen)", "layer '\(layerName)' has no such mag (mags: \(layer.mags.map(\.mag.shortName).joined(separator: ", ")))")
            }
            if isUnfinishedDownsample(layer, entry) {
                throw DatasetError(.invalidArgument, "mag \(chosen)", "its downsampling was interrupted; run it again to finish it first")
            }
            from = chosen
        } else {
            // webknossos: the mag of the largest factor, the first one on a tie.
            guard let coarsest = complete.reduce(nil as MagProperties?, { best, entry in
                best.map { entry.mag.maxFactor > $0.mag.maxFactor ? entry : $0 } ?? entry
            }) else {
                throw DatasetError(.notFound, "layer '\(layerName)'", "has no mag to downsample from")
            }
            from = coarsest.mag
        }
        let box = layer.boundingBox
        // A layer one voxel thick is downsampled in x and y only, as webknossos does.
        let mode: SamplingMode = box.size.z == 1 ? .constantZ : options.samplingMode
        var coarsest = options.coarsest ?? DownsamplePlan.defaultCoarsest(boundingBoxSize: box.size)
        if mode == .constantZ { coarsest = Mag(coarsest.factors.x, coarsest.factors.y, from.factors.z) }
        let mags = try DownsamplePlan.mags(
            from: from, coarsest: coarsest, alignWith: Array(Set(properties.layers.flatMap { $0.mags.map(\.mag) })),
            voxelSize: mode == .anisotropic ? properties.voxelSize : nil)
        var steps = zip([from] + mags.dropLast(), mags).map { DownsampleStep(source: $0, target: $1) }
        if options.firstLevelOnly { steps = Array(steps.prefix(1)) }
        let interpolation = options.interpolation ?? .default(forSegmentation: layer.category == .segmentation)
        return (steps, interpolation)
    }

    /// Builds the coarser mags of `layerName` (this process's part of them, with `shard`).
    /// `progress(step, done, total)` is called after each data file of each level.
    /// - Returns: the levels built.
    @discardableResult
    public mutating func downsample(
        _ layerName: String, options: DownsampleOptions,
        progress: (_ step: DownsampleStep, _ done: Int, _ total: Int) -> Void = { _, _, _ in }
    ) throws -> [DownsampleStep] {
        let (steps, interpolation) = try downsamplePlan(layerName, options)
        // A properties file a killed run was saving goes (only those of dead processes).
        _ = removeStaleTemporaries()
        for step in steps {
            let layer = try self.layer(layerName)
            let source = try mag(layerName, step.source.shortName).store
            let layout = source.layout ?? MagLayout(
                voxelType: source.voxelType, channels: source.channels, blockEdge: 32, fileBlocks: 32,
                compression: source.isCompressed ? .standard : .none, fill: source.fillValue)
            let (target, complete) = try downsampleTarget(layerName, step.target, layout: layout)
            // Built already (by an earlier run, or by every part of a sharded one).
            if complete { continue }
            // What a killed run left half-written goes (files of parts still running stay).
            do {
                _ = try target.removeStaleTemporaries()
            } catch {
                throw DatasetError(.io, target.path, "cannot clean up after an interrupted downsampling", cause: error)
            }
            let level = DownsampleLevel(
                source: source, target: target, factor: step.target.factors.floorDiv(step.source.factors),
                layer: layer, sourceMag: step.source, targetMag: step.target, interpolation: interpolation)
            let files = options.shard.part(of: try level.targetFiles())
            let marker = target.path + "/" + Self.unfinishedDownsampleName
            progress(step, 0, files.count)
            for (done, index) in files.enumerated() {
                do {
                    try level.build(index)
                } catch {
                    throw DatasetError(.io, target.filePath(index), "cannot build this data file of mag \(step.target)", cause: error)
                }
                progress(step, done + 1, files.count)
            }
            try finishDownsampleLevel(marker, shard: options.shard)
        }
        return steps
    }

    /// The file in a mag being built by a downsampling until every part of it is done.
    static let unfinishedDownsampleName = ".wkfs-downsample-in-progress"

    /// Whether `entry`'s mag is being built by a downsampling (or one was interrupted).
    public func isUnfinishedDownsample(_ layer: LayerProperties, _ entry: MagProperties) -> Bool {
        PathOps.exists(magPath(layer, entry) + "/" + Self.unfinishedDownsampleName)
    }

    /// A level is done when every part is: each part leaves a note beside the marker, and the
    /// part that finds all N notes removes them and the marker.
    private func finishDownsampleLevel(_ marker: String, shard: WorkShard) throws {
        let directory = PathOps.dirname(marker)
        // The level is done: its marker goes, with the notes of every part (also of parts of
        // an earlier split of the same level).
        func finished() {
            PathOps.removeFiles(in: directory, prefix: Self.unfinishedDownsampleName + ".")
            PathOps.remove(marker)
        }
        if shard.isWhole {
            finished()
        } else {
            try shard.leaveNote(marker + ".", "this part of the level")
            guard shard.everyPartNoted(marker + ".") else { return }
            finished()
        }
        do {
            try PathOps.syncDirectoryOrThrow(PathOps.dirname(marker))
        } catch {
            throw DatasetError(.io, PathOps.dirname(marker), "cannot make the finished level durable", cause: error)
        }
    }

    /// The mag `mag` of the layer, and whether it is complete (no downsampling under way in it).
    /// Made with `layout` unless it exists, all under the properties lock: the parts of a
    /// sharded run start at once. A new mag is marked as being built before its properties
    /// entry exists, so a kill never leaves an empty mag that looks complete.
    mutating func downsampleTarget(_ layerName: String, _ mag: Mag, layout: MagLayout) throws -> (store: any BlockWritableStore, complete: Bool) {
        let lock = try propertiesLock()
        defer { lock.unlock() }
        var current = try Dataset.open(path)
        let layer = try current.layer(layerName)
        let format = layer.format ?? .wkw
        let what = "layer '\(layerName)' mag \(mag)"
        func writable(_ store: any MagStore) throws -> any BlockWritableStore {
            guard let writable = store as? any BlockWritableStore else {
                throw DatasetError(.unsupported, what, "writing \(store.format) mags is not supported")
            }
            return writable
        }
        if let entry = layer.mag(mag) {
            self = current
            return (try writable(try Self.openStore(format, magPath(layer, entry))), !isUnfinishedDownsample(layer, entry))
        }
        let normalized: MagLayout
        do {
            normalized = try MagStores.normalized(layout, for: format)
        } catch {
            throw DatasetError(.invalidArgument, what, "the source mag's layout does not fit the format", cause: error)
        }
        let directory = layerPath(layerName) + "/" + mag.shortName
        let store: any BlockWritableStore
        if PathOps.exists(directory) {
            // A killed run made it but did not add it to the properties.
            guard let existing = try? MagStores.open(format, directory), existing.layout == normalized else {
                throw DatasetError(.alreadyExists, directory, "is in the way of the new mag and is not one like it; move it away")
            }
            store = try writable(existing)
        } else {
            do {
                store = try MagStores.create(at: directory, format: format, layout: normalized, size: mag.fromMag1(layer.boundingBox).end)
            } catch {
                throw DatasetError(.io, directory, "cannot create the mag", cause: error)
            }
        }
        let marker = directory + "/" + Self.unfinishedDownsampleName
        do {
            try AtomicFile.write(marker, Array("being built by wkfs downsample\n".utf8))
        } catch {
            throw DatasetError(.io, marker, "cannot mark the mag as being built", cause: error)
        }
        var entry = MagProperties(mag: mag, path: "./\(layerName)/\(mag.shortName)", cubeLength: format == .wkw ? normalized.fileEdge : nil)
        if layer.usesWkwResolutions { entry.path = nil }
        let added = entry
        try current.modifyPropertiesHoldingLock { properties in
            guard let i = properties.layers.firstIndex(where: { $0.name == layerName }) else {
                throw DatasetError(.notFound, "layer '\(layerName)'", "no such layer")
            }
            properties.layers[i].mags.append(added)
            properties.layers[i].mags.sort { $0.mag < $1.mag }
        }
        if format == .zarr3 {
            let updated = try current.layer(layerName)
            try current.fitZarrShapes(updated)
            do {
                try current.writeZarrGroups(updated)
            } catch {
                throw DatasetError(.io, layerPath(layerName), "cannot rewrite the layer's zarr.json", cause: error)
            }
        }
        self = current
        return (store, false)
    }
}

/// One level of a downsampling: the target mag's data files, each computed from the source.
struct DownsampleLevel: Sendable {
    let source: any MagStore
    let target: any BlockWritableStore
    let factor: Vec3
    let kernel: DownsampleKernel
    /// The target voxels written: the layer's box snapped outward to the target mag.
    let targetBounds: Box
    /// The source voxels read: the layer's box snapped outward to the source mag; voxels beyond
    /// it are mirrored from inside (webknossos pads with numpy's "symmetric").
    let sourceBounds: Box
    /// webknossos's job and tile sizes (target voxels): it pads each tile on its own, and its
    /// nearest voxel depends on the tile.
    let webknossosJob: Vec3
    let webknossosTile: Vec3

    init(source: any MagStore, target: any BlockWritableStore, factor: Vec3, layer: LayerProperties, sourceMag: Mag, targetMag: Mag, interpolation: Interpolation) {
        self.source = source
        self.target = target
        self.factor = factor
        kernel = DownsampleKernel(voxelType: source.voxelType, channels: source.channels, factor: factor, interpolation: interpolation)
        targetBounds = targetMag.fromMag1(layer.boundingBox)
        sourceBounds = sourceMag.fromMag1(layer.boundingBox)
        // webknossos's shard for the new mag: 1024³, or 4096×4096×32 for a Zarr3 layer at most
        // 32 voxels thick; a job is a shard grown (smallest axis doubled) to at least 1024³.
        let shard = layer.format == .zarr3 && layer.boundingBox.size.z <= 32 ? Vec3(4096, 4096, 32) : Vec3(1024, 1024, 1024)
        var job = shard
        while job.volume < 1 << 30 {
            if job.z <= job.x && job.z <= job.y { job.z *= 2 } else if job.y <= job.x { job.y *= 2 } else { job.x *= 2 }
        }
        webknossosJob = job
        webknossosTile = Vec3(
            Swift.min(Swift.max(1024 / factor.x, 1), 512, shard.x), Swift.min(Swift.max(1024 / factor.y, 1), 512, shard.y),
            Swift.min(Swift.max(1024 / factor.z, 1), 512, shard.z))
    }

    /// The target's data files that meet a source data file inside the bounds, in z, y, x order
    /// (the same list in every process: the source level is complete).
    func targetFiles() throws -> [Vec3] {
        var result = Set<Vec3>()
        for index in try source.dataFiles() {
            guard let part = Box(offset: index * source.fileShape, size: source.fileShape).intersection(sourceBounds) else { continue }
            let lo = part.offset.floorDiv(factor), hi = part.end.ceilDiv(factor)
            guard let covered = Box(offset: lo, size: hi - lo).intersection(targetBounds) else { continue }
            result.formUnion(covered.cellRange(target.fileShape).positions)
        }
        return result.sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
    }

    /// Bytes of target voxels computed at once when the target writes whole regions.
    static let wholeFileLimit = 512 << 20

    /// Computes and writes target data file `index` (its part inside the bounds).
    func build(_ index: Vec3) throws {
        guard let box = Box(offset: index * target.fileShape, size: target.fileShape).intersection(targetBounds) else { return }
        let v = target.voxelBytes
        // Slabs of whole blocks, at most about 64 MiB of target voxels.
        let plane = box.size.x * box.size.y * v
        let b = target.blockShape.z
        let thickness = Swift.max(b, Swift.min(box.size.z, (64 << 20) / Swift.max(1, plane) / b * b))
        if target.streamsLayers || box.voxelCount * v > Self.wholeFileLimit {
            var buffer = [UInt8](repeating: 0, count: plane * thickness)
            try target.writeRegion(box) { part in
                let bytes = part.voxelCount * v
                if buffer.count < bytes { buffer = [UInt8](repeating: 0, count: bytes) }
                try buffer.withUnsafeMutableBytes { try compute(part, into: $0.baseAddress!) }
                return buffer.withUnsafeBytes { $0.baseAddress! }
            }
        } else {
            let whole = LargeBuffer.allocate(byteCount: box.voxelCount * v)
            defer { whole.deallocate() }
            var z = box.offset.z
            while z < box.end.z {
                let end = Swift.min(box.end.z, (z / b + 1) * b + thickness - b)
                let part = Box(offset: Vec3(box.offset.x, box.offset.y, z), size: Vec3(box.size.x, box.size.y, end - z))
                try compute(part, into: whole.baseAddress! + (z - box.offset.z) * plane)
                z = end
            }
            try target.writeRegion(box, from: UnsafeRawBufferPointer(whole))
        }
    }

    /// The target voxels of `part` (C order z, y, x, c) into `destination`.
    func compute(_ part: Box, into destination: UnsafeMutableRawPointer) throws {
        let needed = Box(offset: part.offset * factor, size: part.size * factor)
        let s = sourceBounds, t = targetBounds
        // webknossos pads each of its tiles on its own: a voxel beyond the box is mirrored from
        // the valid voxels of its tile (for factor 2 that is the edge voxel, whatever the tile).
        func mirrored(_ start: Int, _ count: Int, _ f: Int, _ lo: Int, _ hi: Int, _ job: Int, _ tile: Int, _ tlo: Int, _ thi: Int) -> [Int] {
            (start..<(start + count)).map { i in
                if i >= lo && i < hi { return i }
                let (tileStart, tileEnd) = Self.tile(Self.floorDiv(i, f), job: job, tile: tile, lo: tlo, hi: thi)
                return Self.reflect(i, Swift.max(lo, tileStart * f), Swift.min(hi, tileEnd * f))
            }
        }
        let j = webknossosJob, tl = webknossosTile
        let mx = mirrored(needed.offset.x, needed.size.x, factor.x, s.offset.x, s.end.x, j.x, tl.x, t.offset.x, t.end.x)
        let my = mirrored(needed.offset.y, needed.size.y, factor.y, s.offset.y, s.end.y, j.y, tl.y, t.offset.y, t.end.y)
        let mz = mirrored(needed.offset.z, needed.size.z, factor.z, s.offset.z, s.end.z, j.z, tl.z, t.offset.z, t.end.z)
        let readLo = Vec3(mx.min()!, my.min()!, mz.min()!)
        let read = Box(offset: readLo, size: Vec3(mx.max()! + 1, my.max()! + 1, mz.max()! + 1) - readLo)
        let v = source.voxelBytes
        let input = LargeBuffer.allocate(byteCount: read.voxelCount * v)
        defer { input.deallocate() }
        try source.read(read, into: input)
        var padded: UnsafeMutableRawBufferPointer? = nil
        defer { padded?.deallocate() }
        if read != needed {
            // Mirror the voxels beyond the layer's box from inside it.
            let out = LargeBuffer.allocate(byteCount: needed.voxelCount * v)
            padded = out
            let inRow = read.size.x * v, inPlane = inRow * read.size.y
            let outRow = needed.size.x * v, outPlane = outRow * needed.size.y
            let identityX = mx.first! == read.offset.x && zip(mx, mx.dropFirst()).allSatisfy { $1 == $0 + 1 }
            for z in 0..<needed.size.z {
                for y in 0..<needed.size.y {
                    let from = input.baseAddress! + (mz[z] - read.offset.z) * inPlane + (my[y] - read.offset.y) * inRow
                    let to = out.baseAddress! + z * outPlane + y * outRow
                    if identityX {
                        to.copyMemory(from: from, byteCount: outRow)
                    } else {
                        for x in 0..<needed.size.x { (to + x * v).copyMemory(from: from + (mx[x] - read.offset.x) * v, byteCount: v) }
                    }
                }
            }
        }
        let nearest = kernel.interpolation == .nearest ? nearestMaps(part, needed) : nil
        try kernel.reduce(UnsafeRawPointer((padded ?? input).baseAddress!), target: part.size, into: destination, nearest: nearest)
    }

    /// numpy's "symmetric" padding: index `i` mirrored into `lo..<hi` (the edge voxel repeated).
    static func reflect(_ i: Int, _ lo: Int, _ hi: Int) -> Int {
        let n = hi - lo, period = 2 * n
        var j = (i - lo) % period
        if j < 0 { j += period }
        return lo + (j < n ? j : period - 1 - j)
    }

    /// For nearest, per axis: the source voxel (in `needed`) webknossos takes for each target
    /// voxel of `part`: scipy's zoom over each of its tiles (`floor(i * (nIn - 1) / (nOut - 1) + 0.5)`).
    func nearestMaps(_ part: Box, _ needed: Box) -> DownsampleKernel.NearestMaps {
        func axis(_ start: Int, _ count: Int, _ f: Int, _ job: Int, _ tile: Int, _ lo: Int, _ hi: Int, _ neededStart: Int) -> [Int] {
            (start..<(start + count)).map { t in
                let (tileStart, tileEnd) = Self.tile(t, job: job, tile: tile, lo: lo, hi: hi)
                let nOut = tileEnd - tileStart, nIn = nOut * f, i = t - tileStart
                let offset = nOut == 1 ? 0 : Int((Double(i) * Double(nIn - 1) / Double(nOut - 1) + 0.5).rounded(.down))
                return tileStart * f + offset - neededStart
            }
        }
        let b = targetBounds, j = webknossosJob, tl = webknossosTile
        return DownsampleKernel.NearestMaps(
            x: axis(part.offset.x, part.size.x, factor.x, j.x, tl.x, b.offset.x, b.end.x, needed.offset.x),
            y: axis(part.offset.y, part.size.y, factor.y, j.y, tl.y, b.offset.y, b.end.y, needed.offset.y),
            z: axis(part.offset.z, part.size.z, factor.z, j.z, tl.z, b.offset.z, b.end.z, needed.offset.z))
    }

    /// The webknossos tile (target voxels, along one axis) that target voxel `t` falls in: jobs
    /// are cells of a grid of `job` voxels cut to the bounds `lo..<hi`, tiles of `tile` voxels
    /// start at each job's start.
    static func tile(_ t: Int, job: Int, tile: Int, lo: Int, hi: Int) -> (start: Int, end: Int) {
        let cell = floorDiv(t, job) * job
        let jobStart = Swift.max(cell, lo), jobEnd = Swift.min(cell + job, hi)
        let tileStart = jobStart + (t - jobStart) / tile * tile
        return (tileStart, Swift.min(tileStart + tile, jobEnd))
    }

    static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
}
