import Foundation
import Formats

/// `wkfs check`: every header, jump table and block, every layer and link.
extension Dataset {
    /// Checks the whole dataset and returns every problem found (empty when it is sound).
    /// With `repair`, first rolls back interrupted in-place writes and removes temporary files
    /// that killed writers left, reporting each in `repaired`.
    /// `progress` is called after each data file with (done, total).
    public func check(
        repair: Bool = false, repaired: (String) -> Void = { _ in }, progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }
    ) -> [String] {
        var problems: [String] = []
        var work: [(any MagStore, [Vec3])] = []
        problems += checkLeftovers(repair: repair, repaired: repaired)
        for link in symlinkLayers() where !link.resolves {
            problems.append("\(layerPath(link.name)): dangling symbolic link to \(link.link)")
        }
        for layer in properties.layers {
            guard let format = layer.format else {
                problems.append("\(propertiesPath): layer '\(layer.name)' has data format '\(layer.dataFormat)', which wkfs does not check")
                continue
            }
            // A layer whose mags all name their paths (webknossos's `add_layer_as_ref`: another
            // dataset's mags) needs no directory of its own.
            let referencesOnly = !layer.mags.isEmpty && layer.mags.allSatisfy { $0.path != nil && !magPath(layer, $0).hasPrefix(layerPath(layer.name) + "/") }
            guard PathOps.isDirectory(layerPath(layer.name)) || referencesOnly else {
                if !symlinkLayers().contains(where: { $0.name == layer.name }) {
                    problems.append("\(layerPath(layer.name)): layer directory is missing")
                }
                continue
            }
            for entry in layer.mags {
                let magPath = magPath(layer, entry)
                let store: any MagStore
                do {
                    store = try Self.openStore(format, magPath)
                } catch {
                    problems.append("\(error)")
                    continue
                }
                if store.voxelType != layer.declaredVoxelType || store.channels != layer.numChannels {
                    problems.append(
                        "\(magPath)/\(format.markerFile): \(store.channels)×\(store.voxelType) disagrees with the properties (elementClass '\(layer.elementClass)', numChannels \(layer.numChannels))"
                    )
                }
                problems += Self.checkLeftovers(of: store, repair: repair, repaired: repaired)
                if isUnfinishedDownsample(layer, entry) {
                    problems.append("\(magPath): downsampling not finished (interrupted, or parts of it still to run); run wkfs downsample again to finish it")
                }
                let rebuilt = Self.compressionCopyPath(magPath)
                if PathOps.exists(rebuilt) {
                    problems.append("\(rebuilt): compression not finished (interrupted, or parts of it still to run); run wkfs compress again to finish it")
                }
                // Every broken directory is reported, and the files found past it still checked.
                var listing: [FormatError] = []
                work.append((store, store.dataFiles(problems: &listing)))
                problems += listing.map { "\($0)" }
            }
        }
        let total = work.reduce(0) { $0 + $1.1.count }
        var done = 0
        for (directory, indices) in work {
            for index in indices {
                do {
                    try directory.verifyFile(index)
                } catch {
                    problems.append("\(error)")
                }
                done += 1
                progress(done, total)
            }
        }
        return problems
    }

    /// The dataset root's leftovers: temporary properties files and an unfinished copy.
    func checkLeftovers(repair: Bool, repaired: (String) -> Void) -> [String] {
        var problems: [String] = []
        if let copy = unfinishedCopy() {
            problems.append("\(path): incomplete copy of \(copy) (interrupted); run the same wkfs copy again to finish it")
        }
        // The root (properties, copy marker, zarr.json) and each layer directory (its zarr.json).
        let directories = [path] + properties.layers.map { layerPath($0.name) }.filter { FileStatus.of($0)?.isDirectory == true }
        for directory in directories {
            if repair {
                for file in Self.removeStaleTemporaries(in: directory) { repaired("\(file): removed a temporary file left by an interrupted write") }
            }
            for name in PathOps.list(directory) where AtomicFile.temporaryOwner(name) != nil {
                problems.append("\(directory)/\(name): temporary file left by an interrupted write (wkfs check --repair removes it)")
            }
        }
        return problems
    }

    /// Removes the temporary files at the dataset's root (a properties file or copy marker not
    /// yet renamed into place) whose process no longer runs.
    /// - Returns: the paths removed.
    func removeStaleTemporaries() -> [String] { Self.removeStaleTemporaries(in: path) }

    /// `removeStaleTemporaries()` for a directory that need not hold a dataset yet.
    static func removeStaleTemporaries(in directory: String) -> [String] {
        staleTemporaries(in: directory).map { name in
            PathOps.remove(directory + "/" + name)
            return directory + "/" + name
        }
    }

    /// The names of temporary files in `directory` whose process no longer runs.
    static func staleTemporaries(in directory: String) -> [String] {
        PathOps.list(directory).filter { name in AtomicFile.temporaryOwner(name).map { !AtomicFile.processRuns($0) } ?? false }
    }

    /// One mag's leftovers: undo journals and temporary files of killed writers.
    static func checkLeftovers(of mag: any MagStore, repair: Bool, repaired: (String) -> Void) -> [String] {
        do {
            if repair {
                for file in try mag.rollBackInterruptedWrites(try mag.leftovers().journals) {
                    repaired("\(file): rolled back a write that was interrupted (the file is its old content again)")
                }
                for file in try mag.removeStaleTemporaries() { repaired("\(file): removed a temporary file left by an interrupted write") }
            }
            let (temporaries, journals) = try mag.leftovers()
            return journals.map { "\(mag.filePath($0)): partly written by an interrupted write (undo journal \(mag.journalPath($0))); wkfs check --repair rolls it back" }
                + temporaries.map { "\($0): temporary file left by an interrupted write (wkfs check --repair removes it)" }
        } catch {
            return ["\(error)"]
        }
    }
}
