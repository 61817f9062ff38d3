public import Foundation
import Formats

/// Changes that the mounted view makes: hand-edited properties, removed links and mags.
extension Dataset {
    /// Reads the properties again from disk.
    public mutating func reload() throws {
        self = try Dataset.open(path)
    }

    /// Validates a new text for the properties file against this dataset.
    /// Checks: valid JSON in a known schema, valid layers, every mag directory present or creatable,
    /// and no new mag path that leaves the dataset.
    /// - Throws: `DatasetError.invalidProperties` naming the file and the field.
    public func validateEdit(_ text: Data) throws -> DatasetProperties {
        let file = propertiesPath
        let new = try DatasetProperties.decode(text, file: file)
        for (i, layer) in new.layers.enumerated() {
            let old = properties.layer(named: layer.name)
            if old == nil && layer.format != .wkw {
                throw DatasetError(
                    .invalidProperties, file,
                    "field 'dataLayers[\(i)].dataFormat': a layer added by editing the properties must be a wkw layer ('\(layer.dataFormat)' given); \(layer.dataFormat) layers are created with their arrays, not declared by hand")
            }
            for (j, mag) in layer.mags.enumerated() {
                guard let path = mag.path else { continue }
                let leaves = path.hasPrefix("/") || path.split(separator: "/").contains("..")
                let known = old?.mag(mag.mag)?.path == path
                if leaves && !known {
                    throw DatasetError(
                        .invalidProperties, file,
                        "field 'dataLayers[\(i)].mags[\(j)].path': '\(path)' leaves the dataset")
                }
            }
            let layerDirectory = layerPath(layer.name)
            if PathOps.exists(layerDirectory) && !PathOps.isDirectory(layerDirectory) {
                throw DatasetError(
                    .invalidProperties, file, "field 'dataLayers[\(i)].name': \(layerDirectory) exists and is not a directory")
            }
            if layer.format == .wkw {
                for (j, mag) in layer.mags.enumerated() where !PathOps.exists(magPath(layer, mag) + "/header.wkw") {
                    let target = magPath(layer, mag)
                    if PathOps.exists(target) && !PathOps.isDirectory(target) {
                        throw DatasetError(
                            .invalidProperties, file, "field 'dataLayers[\(i)].mags[\(j)]': \(target) is not a directory")
                    }
                    if Self.newMagLayout(layer, mag) == nil {
                        throw DatasetError(
                            .invalidProperties, file,
                            "field 'dataLayers[\(i)].mags[\(j)].cubeLength': \(mag.cubeLength ?? 0) is not a power of two up to 16384, so the mag cannot be created")
                    }
                }
            }
        }
        return new
    }

    /// What `edit` puts back as it was in `older` though `now` changed it: a layer added since
    /// and dropped, or a layer's box or mags (nil: nothing).
    static func undoneChange(older: DatasetProperties, now: DatasetProperties, edit: DatasetProperties) -> String? {
        for layer in now.layers {
            guard let before = older.layer(named: layer.name) else {
                if edit.layer(named: layer.name) == nil { return "the layers without '\(layer.name)'" }
                continue
            }
            guard let edited = edit.layer(named: layer.name) else { continue }
            if layer.boundingBox != before.boundingBox && edited.boundingBox == before.boundingBox {
                return "the bounding box of layer '\(layer.name)'"
            }
            let mags = { (l: LayerProperties) in l.mags.map(\.mag.shortName).sorted() }
            if mags(layer) != mags(before) && mags(edited) == mags(before) { return "the mags of layer '\(layer.name)'" }
        }
        return nil
    }

    /// Replaces the properties file with `text` (validated first, written as given) and creates
    /// the directories and mags that new entries name.
    /// - Parameter base: the text the edit was made from, when known: if the file changed since
    ///   (another program grew a box, added a mag or a layer), the edit would undo that change
    ///   and is refused, unless it is the file as it is now.
    /// - Parameter since: an older text the editing program read first (its buffer may be made
    ///   from it even though it read `base` since: vim reads the file again for its backup
    ///   copy): an edit that puts back a layer's box or mags as they were in it, where the file
    ///   has changed them since, or drops a layer added since, is refused too.
    public mutating func applyEdit(_ text: Data, base: Data? = nil, since: Data? = nil) throws {
        let new = try validateEdit(text)
        let lock = try propertiesLock()
        defer { lock.unlock() }
        let onDisk = try Dataset.open(path).properties
        let current = FileManager.default.contents(atPath: propertiesPath)
        if let base, let current, current != base, current != text {
            properties = onDisk
            throw DatasetError(
                .conflict, propertiesPath,
                "the file changed since this text was read (another program wrote it: a write that grew a bounding box, an added mag or layer); read it again and make the edit there")
        }
        if let since, let current, since != current, current != text, let older = try? DatasetProperties.decode(since, file: propertiesPath),
            let undone = Self.undoneChange(older: older, now: onDisk, edit: new)
        {
            properties = onDisk
            throw DatasetError(
                .conflict, propertiesPath,
                "this text puts back \(undone) as it was before another program changed it; read the file again and make the edit there")
        }
        // Without a base: a bounding box another writer grew since this view last read the file
        // must not be shrunk back by an edit made from the older text: the box would stop
        // covering voxels that were written. Refused (with this view brought up to date, so the
        // edit can be made again from the new text).
        for layer in new.layers where base == nil {
            guard let disk = onDisk.layer(named: layer.name), let known = properties.layer(named: layer.name),
                disk.boundingBox != known.boundingBox, layer.boundingBox.union(disk.boundingBox) != layer.boundingBox
            else { continue }
            properties = onDisk
            throw DatasetError(
                .conflict, propertiesPath,
                "another writer changed the bounding box of layer '\(layer.name)' to \(disk.boundingBox) while this text was edited; edit the file again")
        }
        // The directories and mags new entries name are made first, and removed again when a
        // later step fails: a refused edit leaves the dataset as it was, and a saved one never
        // names a mag that could not be made.
        var made: [String] = []
        do {
            for layer in new.layers where layer.format == .wkw {
                if !PathOps.exists(layerPath(layer.name)) {
                    try PathOps.makeDirectory(layerPath(layer.name))
                    made.append(layerPath(layer.name))
                }
                for mag in layer.mags where !PathOps.exists(magPath(layer, mag) + "/header.wkw") {
                    guard let layout = Self.newMagLayout(layer, mag) else { continue }
                    if !PathOps.exists(magPath(layer, mag)) { made.append(magPath(layer, mag)) }
                    _ = try MagStores.create(at: magPath(layer, mag), format: .wkw, layout: layout, size: .zero)
                    made.append(magPath(layer, mag) + "/header.wkw")
                }
            }
            try AtomicFile.write(propertiesPath, Array(text))
        } catch {
            for path in made.reversed() {
                if PathOps.isDirectory(path) { try? PathOps.removeDirectory(path) } else { PathOps.remove(path) }
            }
            throw DatasetError(.io, propertiesPath, "cannot save the edit", cause: error)
        }
        properties = new
        // Zarr3 arrays' shapes follow a box that grew (under the lock, as for writes).
        for layer in new.layers where layer.format == .zarr3 {
            try fitZarrShapes(layer)
        }
    }

    /// The layout of a (WKW) mag that a hand-written entry asks for: raw, 32³ blocks (fewer for a
    /// small `cubeLength`), as many blocks per file as `cubeLength` (default 1024) needs.
    static func newMagLayout(_ layer: LayerProperties, _ mag: MagProperties) -> MagLayout? {
        guard let voxelType = layer.declaredVoxelType else { return nil }
        let edge = mag.cubeLength ?? 1024
        guard edge >= 1, edge <= 1 << 14, edge & (edge - 1) == 0 else { return nil }
        let blockLength = min(32, edge)
        return try? MagStores.normalized(
            MagLayout(
                voxelType: voxelType, channels: layer.numChannels, blockEdge: blockLength, fileBlocks: edge / blockLength,
                compression: .none),
            for: .wkw)
    }

    /// Removes a symbolic-link layer: its link and its entry, never the target's data.
    public mutating func removeSymlinkLayer(_ name: String) throws {
        guard properties.layer(named: name) != nil else {
            throw DatasetError(.notFound, "layer '\(name)'", "no such layer")
        }
        guard FileStatus.of(layerPath(name))?.isSymbolicLink ?? false else {
            throw DatasetError(.invalidArgument, layerPath(name), "is not a symbolic link; only linked layers can be removed")
        }
        try modifyProperties { $0.layers.removeAll { $0.name == name } }
        PathOps.remove(layerPath(name))
    }

    /// Adds a mag with the settings of the layer's first mag: its block length, file length and
    /// block type; a Zarr3 mag is made exactly like the first (`addZarrMag(_:_:like:)`).
    @discardableResult
    public mutating func addMagLikeOthers(_ layerName: String, _ name: String) throws -> MagView {
        let layer = try layer(layerName)
        var settings = (blockLength: 32, fileLength: 32, compress: false)
        if let first = layer.mags.first, let format = layer.format, let store = try? Self.openStore(format, magPath(layer, first)) {
            // A (c, x, y, z) array, as the properties entry of a new mag says.
            if let array = store as? Zarr3Array, array.channels == layer.numChannels, array.dimensionCount == 4 {
                return try addZarrMag(layer, name, like: array)
            }
            settings = (store.blockShape.x, store.blocksPerFileEdge.x, store.isCompressed)
        }
        return try addMag(
            layerName, name, blockLength: settings.blockLength, fileLength: settings.fileLength, compress: settings.compress)
    }

    /// Removes a mag that holds no data files: its `header.wkw`, its empty directories and its entry.
    public mutating func removeEmptyMag(_ layerName: String, _ mag: Mag) throws {
        let layer = try layer(layerName)
        guard let entry = layer.mag(mag) else { throw DatasetError(.notFound, "mag \(mag)", "no such mag") }
        let directory = magPath(layer, entry)
        // Anything but the format's marker file (header.wkw, zarr.json), the lock file and empty
        // directories is data (even under a broken marker).
        let kept: Set<String> = [(layer.format ?? .wkw).markerFile, Zarr3Array.lockFileName]
        func holdsData(_ path: String) -> Bool {
            PathOps.list(path).contains { name in
                let child = path + "/" + name
                if path == directory && kept.contains(name) { return false }
                return PathOps.isDirectory(child) ? holdsData(child) : true
            }
        }
        if holdsData(directory) {
            throw DatasetError(.invalidArgument, directory, "mag directory holds data files")
        }
        try updateLayer(layerName) { $0.mags.removeAll { $0.mag == mag } }
        for name in kept { PathOps.remove(directory + "/" + name) }
        func removeEmpty(_ path: String) {
            for name in PathOps.list(path) where PathOps.isDirectory(path + "/" + name) { removeEmpty(path + "/" + name) }
            try? PathOps.removeDirectory(path)
        }
        removeEmpty(directory)
        if layer.format == .zarr3 { try writeZarrGroups(try self.layer(layerName)) }
    }
}
