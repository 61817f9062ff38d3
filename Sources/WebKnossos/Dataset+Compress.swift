import Foundation
import Formats

/// `compress`: uncompressed mags rewritten compressed (LZ4HC in WKW, zstd in Zarr3), voxels
/// unchanged (also those outside the bounding box, which webknossos drops).
///
/// A mag is rebuilt beside itself (`.wkfs-compress-MAG`, same layout, compressed) data file by
/// data file, then swapped with it in one atomic step (`renameat2` RENAME_EXCHANGE), so readers
/// see the old mag or the new one, never a mix (a Zarr3 array has one codec list for all its
/// shards). Each part records how far it got: running it again after a kill goes on from there.
/// Nothing may write the mag meanwhile (as with webknossos): such writes go to the old mag.
extension Dataset {
    /// What happened to one mag.
    public enum CompressOutcome: Sendable, Equatable {
        case compressed
        case alreadyCompressed
        /// This part is done; another part swaps the mag in when all are.
        case partDone
        /// A mag of another dataset that the layer refers to: left alone.
        case foreign
    }

    static let compressPrefix = ".wkfs-compress-"
    /// In the rebuilt mag: marks it as the new one (after the swap, the old one lacks it).
    static let compressNewMarker = ".wkfs-compress-new"

    /// Compresses the uncompressed mags of `layerName` (every layer when nil; only `mags` when
    /// given), this process's part with `shard`. `progress(layer, mag, done, total)` after each file.
    public mutating func compress(
        layer layerName: String?, mags: [Mag]? = nil, shard: WorkShard = .whole,
        progress: (_ layer: String, _ mag: Mag, _ done: Int, _ total: Int) -> Void = { _, _, _, _ in }
    ) throws -> [(layer: String, mag: Mag, outcome: CompressOutcome)] {
        let layers = try layerName.map { [try layer($0)] } ?? properties.layers
        var results: [(String, Mag, CompressOutcome)] = []
        for layer in layers {
            guard layer.format != nil else {
                throw DatasetError(.unsupported, "layer '\(layer.name)'", "data format '\(layer.dataFormat)' is not supported (wkfs reads wkw and zarr3)")
            }
            if let mags {
                for mag in mags where layer.mag(mag) == nil {
                    throw DatasetError(.notFound, "mag \(mag)", "layer '\(layer.name)' has no such mag (mags: \(layer.mags.map(\.mag.shortName).joined(separator: ", ")))")
                }
            }
            for entry in layer.mags where mags?.contains(entry.mag) ?? true {
                let outcome = try compressMag(layer, entry, shard: shard) { progress(layer.name, entry.mag, $0, $1) }
                results.append((layer.name, entry.mag, outcome))
            }
        }
        return results
    }

    private func compressMag(
        _ layer: LayerProperties, _ entry: MagProperties, shard: WorkShard, progress: (Int, Int) -> Void
    ) throws -> CompressOutcome {
        if isForeign(layer, entry) { return .foreign }
        let format = layer.format ?? .wkw
        let path = magPath(layer, entry)
        let rebuilt = Self.compressionCopyPath(path)
        let what = "layer '\(layer.name)' mag \(entry.mag)"

        // Nothing to do, nothing written (not even a lock; the dataset may be read-only).
        if !PathOps.exists(rebuilt), !PathOps.exists(path + Self.oldSuffix), let store = try? Self.openStore(format, path), store.isCompressed {
            Self.removeCompressionNotes(path)
            return .alreadyCompressed
        }
        // Runs writing into the rebuilt copy hold its lock shared, from before they look at it;
        // the swap takes it exclusively, so it never moves the copy away under a run still
        // writing into it, and a run that waited finds the mag compressed.
        let lockPath = rebuilt + ".lock"
        var writing: DirectoryLock? = try Self.compressLock(lockPath, shared: true)
        defer { writing?.unlock() }

        // Setup under the properties lock: the parts of a sharded run start at once.
        let (source, target): (any MagStore, (any BlockWritableStore)?) = try withPropertiesLock {
            try Self.recoverCompression(path, rebuilt) { (try? Self.openStore(format, path))?.isCompressed == true }
            let source: any MagStore
            do {
                source = try Self.openStore(format, path)
            } catch {
                throw DatasetError(.notFound, what, "not a usable \(format) mag", cause: error)
            }
            if source.isCompressed { return (source, nil) }
            guard var layout = source.layout else {
                throw DatasetError(.unsupported, what, "its blocks or files are not cubes; wkfs compresses cubic layouts only")
            }
            layout.compression = .standard
            if let existing = try? MagStores.open(format, rebuilt) as? any BlockWritableStore, existing.layout == layout {
                // What a killed part left half-written goes (a running part's files stay).
                do {
                    _ = try existing.removeStaleTemporaries()
                } catch {
                    throw DatasetError(.io, rebuilt, "cannot clean up after an interrupted compression", cause: error)
                }
                return (source, existing)
            }
            try PathOps.removeTree(rebuilt)
            do {
                let created = try MagStores.create(at: rebuilt, format: format, layout: layout, size: entry.mag.fromMag1(layer.boundingBox).end)
                try MagStores.keepAttributes(of: source, in: created)
                try AtomicFile.write(rebuilt + "/" + Self.compressNewMarker, Array("compressed copy of \(path)\n".utf8))
                return (source, created)
            } catch {
                try? PathOps.removeTree(rebuilt)
                throw DatasetError(.io, rebuilt, "cannot create the compressed copy of the mag", cause: error)
            }
        }
        guard let target else {
            Self.removeCompressionNotes(path)
            PathOps.remove(lockPath)  // compressed: nobody writes a copy any more
            return .alreadyCompressed
        }

        let files = shard.part(of: try source.dataFiles().sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) })
        let progressPath = rebuilt + "/" + Self.compressPrefix + "progress-\(shard.index)-of-\(shard.count)"
        var done = (FileManager.default.contents(atPath: progressPath).flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0)
        done = Swift.min(done, files.count)
        progress(done, files.count)
        for index in files[done...] {
            do {
                try Self.copyCompressed(index, from: source, to: target)
                // The part's place is durable only after the file it counts is.
                try AtomicFile.write(progressPath, Array(String(done + 1).utf8))
            } catch {
                throw DatasetError(.io, source.filePath(index), "cannot compress this data file", cause: error)
            }
            done += 1
            progress(done, files.count)
        }
        let notes = rebuilt + "/" + Self.compressPrefix + "done-"
        try shard.leaveNote(notes, "this part of the compression")
        writing?.unlock()
        writing = nil
        let swapping = try Self.compressLock(lockPath, shared: false)
        defer { swapping.unlock() }
        return try withPropertiesLock {
            // Swapped by another part already: the rebuilt path holds the old mag.
            guard PathOps.exists(rebuilt + "/" + Self.compressNewMarker) else { return .compressed }
            guard shard.everyPartNoted(notes) else { return .partDone }
            do {
                _ = try target.removeStaleTemporaries()
            } catch {
                throw DatasetError(.io, rebuilt, "cannot clean up after an interrupted compression", cause: error)
            }
            try Self.swapInCompressed(path, rebuilt)
            // The rebuilt array is (c, x, y, z), also where the old one had no channel axis:
            // webknossos takes the axes from the properties entry.
            // Saved only when the entry says otherwise (no needless change of the properties).
            var current = self
            if format == .zarr3, (try? Dataset.open(self.path))?.properties.layer(named: layer.name)?.mag(entry.mag)?.axisOrder != MagProperties.channelFirstAxes {
                try current.modifyPropertiesHoldingLock { properties in
                    guard let i = properties.layers.firstIndex(where: { $0.name == layer.name }),
                        let j = properties.layers[i].mags.firstIndex(where: { $0.mag == entry.mag })
                    else { return }
                    properties.layers[i].mags[j].axisOrder = MagProperties.channelFirstAxes
                }
            }
            // Whoever waits for the lock now finds the mag compressed.
            PathOps.remove(lockPath)
            return .compressed
        }
    }

    /// Data file `index` of `source` into `target` (same layout, compressed), block by block:
    /// blocks that are holes or zeros are not read or encoded (a raw file of a sparse layer is
    /// mostly holes), the others are encoded on every core.
    static func copyCompressed(_ index: Vec3, from source: any MagStore, to target: any BlockWritableStore) throws {
        guard let reader = try source.openDataFile(index) else { return }
        // `.zero` is a block with no data, which reads as the fill value: zeros only where that is 0.
        let zeroIsEmpty = target.fillsWithZero
        try target.replaceFile(index, directories: nil, parallel: true) { n in
            if reader.isHole(consecutive: n..<(n + 1)) { return .zero }
            let bytes = try reader.decode(consecutive: n..<(n + 1))
            return zeroIsEmpty && bytes.withUnsafeBytes(RegionCopy.isZero) ? .zero : .decoded(bytes)
        }
    }

    /// Swaps the rebuilt mag in (atomically where the file system can), then removes the old one.
    static func swapInCompressed(_ path: String, _ rebuilt: String) throws {
        do {
            if !(try PathOps.exchange(path, rebuilt)) {
                // No atomic swap here (NFS): the old mag steps aside first; `recoverCompression`
                // puts it back if a kill comes between the two renames.
                try PathOps.rename(path, to: path + oldSuffix)
                try PathOps.rename(rebuilt, to: path)
                try PathOps.rename(path + oldSuffix, to: rebuilt)
            }
            try PathOps.syncDirectoryOrThrow(PathOps.dirname(path))
        } catch {
            throw DatasetError(.io, path, "cannot swap in the compressed mag", cause: error)
        }
        // The old copy goes before the notes: until they are gone, the marker in the live mag
        // tells a later run that what is left beside it is the old copy (`recoverCompression`).
        do {
            try PathOps.removeTree(rebuilt)
        } catch {
            throw DatasetError(.io, rebuilt, "the mag is compressed, but its old copy could not be removed", cause: error)
        }
        removeCompressionNotes(path)
    }

    static let oldSuffix = ".wkfs-compress-old"

    static func compressLock(_ path: String, shared: Bool) throws -> DirectoryLock {
        do {
            return try DirectoryLock(lockFile: path, shared: shared)
        } catch {
            throw DatasetError(.io, path, "cannot take the compression's lock", cause: error)
        }
    }

    /// Finishes what a killed run left: a swap halfway (no atomic swap), or the old mag not yet
    /// removed after the swap.
    /// `liveIsCompressed` covers what runs of earlier versions left, which removed the notes
    /// before the old copy: the live mag compressed, and beside it a copy without the marker
    /// (only the old mag lacks it).
    static func recoverCompression(_ path: String, _ rebuilt: String, liveIsCompressed: () -> Bool) throws {
        if !PathOps.exists(path) && PathOps.exists(path + oldSuffix) {
            try PathOps.rename(path + oldSuffix, to: path)
        }
        guard !PathOps.exists(rebuilt + "/" + compressNewMarker) else { return }
        if PathOps.exists(path + "/" + compressNewMarker) || (PathOps.exists(rebuilt) && liveIsCompressed()) {
            try PathOps.removeTree(rebuilt)
            try PathOps.removeTree(path + oldSuffix)
            removeCompressionNotes(path)
        }
    }

    /// The compressed mag's own markers, which it kept from being the rebuilt copy.
    static func removeCompressionNotes(_ path: String) {
        PathOps.removeFiles(in: path, prefix: compressPrefix)
    }

    /// Where the compressed copy of the mag at `magPath` is built: beside it.
    static func compressionCopyPath(_ magPath: String) -> String {
        PathOps.dirname(magPath) + "/" + compressPrefix + (magPath.split(separator: "/").last.map(String.init) ?? "mag")
    }
}

extension PathOps {
    /// Removes `path` and everything under it; a missing path is fine.
    static func removeTree(_ path: String) throws {
        guard exists(path) else { return }
        try FileManager.default.removeItem(atPath: path)
    }

    /// Removes the files in `directory` whose names start with `prefix` (the notes of a job's parts).
    static func removeFiles(in directory: String, prefix: String) {
        for name in list(directory) where name.hasPrefix(prefix) { remove(directory + "/" + name) }
    }
}
