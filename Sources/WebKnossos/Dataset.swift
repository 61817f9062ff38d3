import Foundation
public import Formats

/// A webknossos dataset on disk: a directory with `datasource-properties.json`, one directory per
/// layer and one WKW mag directory per mag. Every change to the properties is saved atomically.
public struct Dataset: Sendable {
    public let path: String
    public internal(set) var properties: DatasetProperties

    public var propertiesPath: String { path + "/" + DatasetProperties.fileName }

    /// Opens an existing dataset.
    public static func open(_ path: String) throws -> Dataset {
        let path = Self.normalize(path)
        let file = path + "/" + DatasetProperties.fileName
        guard FileManager.default.fileExists(atPath: file) else {
            let why = FileManager.default.fileExists(atPath: path) ? "is not a dataset (no \(DatasetProperties.fileName))" : "does not exist"
            throw DatasetError(.notFound, path, why)
        }
        guard let status = FileStatus.of(file, followLinks: true), status.isRegularFile else {
            throw DatasetError(.invalidProperties, file, PathOps.isDirectory(file) ? "is a directory, not a file" : "is not a regular file")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw DatasetError(.io, file, "cannot read: \(Self.reason(error))")
        }
        return Dataset(path: path, properties: try DatasetProperties.decode(data, file: file))
    }

    /// Creates a new, empty dataset; refuses a path that holds a dataset or other files (but
    /// the names in `allowing`).
    public static func create(_ path: String, voxelSize: [Double], unit: String = "nanometer", allowing: Set<String> = []) throws -> Dataset {
        let path = Self.normalize(path)
        guard voxelSize.count == 3, voxelSize.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw DatasetError(.invalidArgument, "--voxel-size", "expected three positive numbers")
        }
        if FileManager.default.fileExists(atPath: path + "/" + DatasetProperties.fileName) {
            throw DatasetError(.alreadyExists, path, "a dataset already exists here")
        }
        // What an interrupted create left (a temporary properties file of a process that is gone)
        // does not count: the retry removes it.
        let stale = Set(staleTemporaries(in: path))
        if PathOps.list(path).contains(where: { !allowing.contains($0) && !stale.contains($0) }) {
            throw DatasetError(.alreadyExists, path, "directory is not empty")
        }
        _ = removeStaleTemporaries(in: path)
        let existed = PathOps.exists(path)
        do {
            try PathOps.makeDirectories(path, inherit: false)
        } catch {
            throw DatasetError(.io, path, "cannot create directory", cause: error)
        }
        let name = URL(fileURLWithPath: path).lastPathComponent
        var dataset = Dataset(path: path, properties: DatasetProperties(name: name, voxelSize: voxelSize, unit: unit))
        do {
            try dataset.save()
        } catch {
            if !existed { try? PathOps.removeDirectory(path) }
            throw error
        }
        return dataset
    }

    /// Replaces the properties (already validated by the caller) and saves them.
    public mutating func replaceProperties(_ properties: DatasetProperties) throws {
        try modifyProperties { $0 = properties }
    }

    /// Writes the properties file atomically (callers that change a dataset others may change
    /// too go through `modifyProperties`).
    mutating func save() throws {
        do {
            try AtomicFile.write(propertiesPath, Array(properties.encoded()))
        } catch {
            throw DatasetError(.io, propertiesPath, "cannot save", cause: error)
        }
    }

    /// Foundation's errors in words ("permission denied"), not "NSCocoaErrorDomain error 256".
    static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code))).lowercased()
        }
        return ns.localizedDescription
    }

    static func normalize(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    // MARK: Layers

    public var layers: [LayerProperties] { properties.layers }

    /// The properties of a layer.
    /// - Throws: `DatasetError.notFound` listing the layers that exist.
    public func layer(_ name: String) throws -> LayerProperties {
        guard let layer = properties.layer(named: name) else {
            let names = properties.layers.map(\.name).joined(separator: ", ")
            throw DatasetError(.notFound, "layer '\(name)'", "no such layer in \(path) (layers: \(names.isEmpty ? "none" : names))")
        }
        guard layer.format != nil else {
            throw DatasetError(.unsupported, "layer '\(name)'", "data format '\(layer.dataFormat)' is not supported (wkfs reads wkw and zarr3)")
        }
        return layer
    }

    /// The directory of a layer (which may be a symbolic link).
    public func layerPath(_ name: String) -> String { path + "/" + name }

    /// Adds an empty layer and its directory.
    @discardableResult
    public mutating func addLayer(
        _ name: String, category: LayerProperties.Category, voxelType: VoxelType, channels: Int = 1,
        largestSegmentId: UInt64? = nil, format: DataFormat = .wkw
    ) throws -> LayerProperties {
        if let why = LayerProperties.invalidNameReason(name) { throw DatasetError(.invalidArgument, "layer name", why) }
        guard channels >= 1, channels <= 255, format != .wkw || channels * voxelType.size <= 255 else {
            throw DatasetError(.invalidArgument, "--channels", "\(channels) channels of \(voxelType) do not fit in a WKW voxel")
        }
        if properties.layer(named: name) != nil {
            throw DatasetError(.alreadyExists, layerPath(name), "layer already exists")
        }
        if !(try removeIfLeftOfKilledRun(layerPath(name))) {
            throw DatasetError(.alreadyExists, layerPath(name), Self.inTheWay(layerPath(name), "layer directory"))
        }
        var layer = LayerProperties(name: name, category: category, voxelType: voxelType, channels: channels)
        layer.dataFormat = format.rawValue
        if category == .segmentation {
            layer.largestSegmentId = largestSegmentId.map(Self.segmentIdJSON) ?? .null
        } else if largestSegmentId != nil {
            throw DatasetError(.invalidArgument, "--largest-segment-id", "only segmentation layers have one")
        }
        do {
            try PathOps.makeDirectory(layerPath(name))
        } catch {
            throw DatasetError(.io, layerPath(name), "cannot create the layer directory", cause: error)
        }
        let directory = layerPath(name)
        if format == .zarr3 {
            do {
                try writeZarrGroups(layer)
            } catch {
                PathOps.remove(directory + "/" + Zarr3Array.metadataName)
                try? PathOps.removeDirectory(directory)
                throw DatasetError(.io, directory, "cannot write the layer's zarr.json", cause: error)
            }
        }
        try appendLayer(layer) {
            PathOps.remove(directory + "/" + Zarr3Array.metadataName)
            try? PathOps.removeDirectory(directory)
        }
        return layer
    }

    /// Adds `layer`'s entry to the properties on disk (refused when another writer added a layer
    /// of that name meanwhile); on failure `undo` removes what the caller made for it, so a
    /// retry finds nothing in its way.
    mutating func appendLayer(_ layer: LayerProperties, undo: () -> Void) throws {
        let directory = layerPath(layer.name)
        do {
            try modifyProperties { properties in
                guard properties.layer(named: layer.name) == nil else {
                    throw DatasetError(.alreadyExists, directory, "layer already exists")
                }
                properties.layers.append(layer)
            }
        } catch {
            undo()
            throw error
        }
    }

    /// Segment ids above 2^53 - 1 are written as the reference's bigint object.
    static func segmentIdJSON(_ id: UInt64) -> JSONValue {
        id <= (1 << 53) - 1
            ? .int(Int64(id)) : .object([("customJsonEncoding", .string("bigint")), ("value", .string(String(id)))])
    }

    /// Changes one layer's entry as it is on disk now (see `modifyProperties`).
    mutating func updateLayer(_ name: String, _ change: (inout LayerProperties) throws -> Void) throws {
        try modifyProperties { properties in
            guard let i = properties.layers.firstIndex(where: { $0.name == name }) else {
                throw DatasetError(.notFound, "layer '\(name)'", "no such layer")
            }
            try change(&properties.layers[i])
        }
    }

    // MARK: Mags

    /// The directory holding a mag's data: the entry's `path` where it has one (relative to the
    /// dataset, or absolute, as the reference resolves it), else `LAYER/MAG` (short name such as
    /// `2-2-1`, or the long `2-2-1` form of older datasets, whichever exists).
    public func magPath(_ layer: LayerProperties, _ mag: MagProperties) -> String {
        if let p = mag.path {
            return p.hasPrefix("/") ? p : path + "/" + (p.hasPrefix("./") ? String(p.dropFirst(2)) : p)
        }
        let short = layerPath(layer.name) + "/" + mag.mag.shortName
        let long = layerPath(layer.name) + "/" + mag.mag.longName
        let marker = "/" + (layer.format ?? .wkw).markerFile
        return !PathOps.exists(short + marker) && PathOps.exists(long + marker) ? long : short
    }

    /// Opens a mag of a layer.
    /// - Parameter name: the mag as written on the command line (`1`, `2`, `2-2-1`).
    public func mag(_ layerName: String, _ name: String) throws -> MagView {
        let layer = try layer(layerName)
        let mag = try Mag(parsing: name)
        guard let entry = layer.mag(mag) else {
            let names = layer.mags.map(\.mag.shortName).joined(separator: ", ")
            throw DatasetError(.notFound, "mag '\(name)'", "layer '\(layerName)' has no such mag (mags: \(names.isEmpty ? "none" : names))")
        }
        guard let format = layer.format else {
            throw DatasetError(.unsupported, "layer '\(layerName)'", "data format '\(layer.dataFormat)' is not supported (wkfs reads wkw and zarr3)")
        }
        let store: any MagStore
        do {
            store = try Self.openStore(format, magPath(layer, entry))
        } catch let error as FormatError {
            let named = entry.path.map { "path '\($0)'" } ?? "directory"
            throw DatasetError(.notFound, "layer '\(layerName)' mag \(name)", "its \(named) is not a usable \(format == .wkw ? "WKW" : "Zarr3") mag", cause: error)
        }
        return MagView(layer: layer, mag: mag, store: store)
    }

    /// Opens the mag at `path` in `format`.
    /// - Throws: `FormatError` when it is not a mag of that format.
    public static func openStore(_ format: DataFormat, _ path: String) throws -> any MagStore {
        try MagStores.open(format, path)
    }

    /// Adds a mag (a directory with its format's marker file, `header.wkw`) and its properties
    /// entry; Zarr3 layers add theirs with the layer's groups (`addZarrMag`).
    @discardableResult
    public mutating func addMag(
        _ layerName: String, _ name: String, blockLength: Int = 32, fileLength: Int = 32, compress: Bool = false
    ) throws -> MagView {
        let layer = try layer(layerName)
        if layer.format == .zarr3 {
            return try addZarrMag(layer, name, chunk: blockLength, shard: blockLength * fileLength, compress: compress)
        }
        let mag = try Mag(parsing: name)
        if layer.mag(mag) != nil {
            throw DatasetError(.alreadyExists, "mag '\(name)'", "layer '\(layerName)' already has this mag")
        }
        guard let voxelType = layer.declaredVoxelType else {
            throw DatasetError(.invalidProperties, propertiesPath, "layer '\(layerName)' has an unknown element class '\(layer.elementClass)'")
        }
        // Layers of unsupported formats get mags of the default format, as they always did.
        let format = layer.format ?? .wkw
        let layout: MagLayout
        do {
            layout = try MagStores.normalized(
                MagLayout(
                    voxelType: voxelType, channels: layer.numChannels, blockEdge: blockLength, fileBlocks: fileLength,
                    compression: compress ? .standard : .none),
                for: format)
        } catch let error as FormatError {
            throw DatasetError(.invalidArgument, blockLength & (blockLength - 1) != 0 || blockLength < 1 || blockLength > 128 ? "--block-len" : "--file-len", error.reason)
        }
        let directoryPath = layerPath(layerName) + "/" + mag.shortName
        if !(try removeIfLeftOfKilledRun(directoryPath)) {
            throw DatasetError(.alreadyExists, directoryPath, Self.inTheWay(directoryPath, "mag directory"))
        }
        let store: any MagStore
        do {
            store = try MagStores.create(at: directoryPath, format: format, layout: layout, size: mag.fromMag1(layer.boundingBox).end)
        } catch {
            throw DatasetError(.io, directoryPath, "cannot create the mag directory", cause: error)
        }
        var entry = MagProperties(mag: mag, path: "./\(layerName)/\(mag.shortName)", cubeLength: layout.fileEdge)
        if layer.usesWkwResolutions { entry.path = nil }
        let added = entry
        do {
            try updateLayer(layerName) { layer in
                guard layer.mag(mag) == nil else {
                    throw DatasetError(.alreadyExists, "mag '\(name)'", "layer '\(layerName)' already has this mag")
                }
                layer.mags.append(added)
                layer.mags.sort { $0.mag < $1.mag }
            }
        } catch {
            // A failed step leaves nothing behind: a retry must not find the directory.
            PathOps.remove(directoryPath + "/" + format.markerFile)
            try? PathOps.removeDirectory(directoryPath)
            throw error
        }
        return MagView(layer: try self.layer(layerName), mag: mag, store: store)
    }

    /// Grows a layer's bounding box to cover `box` (mag-1 voxels) and saves the properties.
    public mutating func growBoundingBox(_ layerName: String, toCover box: Box) throws {
        let current = try layer(layerName).boundingBox
        guard current.union(box) != current else { return }
        // Grown from the box on disk now, which another writer may have grown meanwhile. Zarr3
        // arrays' shapes follow the box, under the same lock (readers such as tensorstore read
        // only inside the shape).
        let path = self
        try updateLayer(layerName) { layer in
            layer.boundingBox = layer.boundingBox.union(box)
            try path.fitZarrShapes(layer)
        }
    }

    /// Writes voxels into a mag and grows the layer's bounding box.
    /// - Parameter box: the region in the mag's own voxels.
    public mutating func write(_ layerName: String, mag name: String, box: Box, bytes: UnsafeRawBufferPointer) throws {
        let view = try mag(layerName, name)
        try view.write(box, from: bytes)
        try growBoundingBox(layerName, toCover: view.mag.toMag1(box))
    }
}

/// One mag of one layer, ready for region reads and writes in the mag's own voxels.
public struct MagView: Sendable {
    public let layer: LayerProperties
    public let mag: Mag
    public let store: any MagStore

    /// The layer's bounding box snapped outward to this mag's grid, in this mag's voxels.
    public var defaultBox: Box { mag.fromMag1(layer.boundingBox) }

    public func read(_ box: Box) throws -> [UInt8] { try store.read(box) }

    /// Reads `box` into `destination`, which holds exactly its bytes.
    public func read(_ box: Box, into destination: UnsafeMutableRawBufferPointer) throws {
        try store.read(box, into: destination)
    }

    /// Asks the kernel to start fetching the first stored bytes of `box` (advice only).
    public func prefetch(_ box: Box) throws { try store.prefetch(box) }

    /// Writes `box` from `bytes` (exactly its bytes), in the mag's own format. The caller grows
    /// the layer's bounding box (`Dataset.growBoundingBox`).
    public func write(_ box: Box, from bytes: UnsafeRawBufferPointer) throws {
        guard let writable = store as? any BlockWritableStore else {
            throw DatasetError(.unsupported, "layer '\(layer.name)' mag \(mag.shortName)", "writing \(store.format) mags is not supported")
        }
        try writable.writeRegion(box, from: bytes)
    }
}
