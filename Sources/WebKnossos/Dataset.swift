import Foundation
public import WKW

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
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw DatasetError(.io, file, "cannot read: \(error.localizedDescription)")
        }
        return Dataset(path: path, properties: try DatasetProperties.decode(data, file: file))
    }

    /// Creates a new, empty dataset; refuses a path that holds a dataset or other files.
    public static func create(_ path: String, voxelSize: [Double], unit: String = "nanometer") throws -> Dataset {
        let path = Self.normalize(path)
        guard voxelSize.count == 3, voxelSize.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw DatasetError(.invalidArgument, "--voxel-size", "expected three positive numbers")
        }
        if FileManager.default.fileExists(atPath: path + "/" + DatasetProperties.fileName) {
            throw DatasetError(.alreadyExists, path, "a dataset already exists here")
        }
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: path), !contents.isEmpty {
            throw DatasetError(.alreadyExists, path, "directory is not empty")
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw DatasetError(.io, path, "cannot create directory: \(error.localizedDescription)")
        }
        let name = URL(fileURLWithPath: path).lastPathComponent
        var dataset = Dataset(path: path, properties: DatasetProperties(name: name, voxelSize: voxelSize, unit: unit))
        try dataset.save()
        return dataset
    }

    /// Replaces the properties (already validated by the caller) and saves them.
    public mutating func replaceProperties(_ properties: DatasetProperties) throws {
        self.properties = properties
        try save()
    }

    /// Writes the properties file atomically.
    public mutating func save() throws {
        do {
            try AtomicFile.write(propertiesPath, Array(properties.encoded()))
        } catch {
            throw DatasetError(.io, propertiesPath, "cannot save: \(error)")
        }
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
        guard layer.dataFormat == "wkw" else {
            throw DatasetError(.unsupported, "layer '\(name)'", "data format '\(layer.dataFormat)' is not supported (only wkw)")
        }
        return layer
    }

    /// The directory of a layer (which may be a symbolic link).
    public func layerPath(_ name: String) -> String { path + "/" + name }

    /// Adds an empty layer and its directory.
    @discardableResult
    public mutating func addLayer(
        _ name: String, category: LayerProperties.Category, voxelType: VoxelType, channels: Int = 1,
        largestSegmentId: UInt64? = nil
    ) throws -> LayerProperties {
        if let why = LayerProperties.invalidNameReason(name) { throw DatasetError(.invalidArgument, "layer name", why) }
        guard channels >= 1, channels <= 255, channels * voxelType.size <= 255 else {
            throw DatasetError(.invalidArgument, "--channels", "\(channels) channels of \(voxelType) do not fit in a WKW voxel")
        }
        if properties.layer(named: name) != nil || PathOps.exists(layerPath(name)) {
            throw DatasetError(.alreadyExists, layerPath(name), "layer already exists")
        }
        var layer = LayerProperties(name: name, category: category, voxelType: voxelType, channels: channels)
        if category == .segmentation {
            layer.largestSegmentId = largestSegmentId.map(Self.segmentIdJSON) ?? .null
        } else if largestSegmentId != nil {
            throw DatasetError(.invalidArgument, "--largest-segment-id", "only segmentation layers have one")
        }
        do {
            try PathOps.makeDirectories(layerPath(name))
        } catch {
            throw DatasetError(.io, layerPath(name), "cannot create layer directory: \(error)")
        }
        properties.layers.append(layer)
        try save()
        return layer
    }

    /// Segment ids above 2^53 - 1 are written as the reference's bigint object.
    static func segmentIdJSON(_ id: UInt64) -> JSONValue {
        id <= (1 << 53) - 1
            ? .int(Int64(id)) : .object([("customJsonEncoding", .string("bigint")), ("value", .string(String(id)))])
    }

    mutating func updateLayer(_ name: String, _ change: (inout LayerProperties) -> Void) throws {
        guard let i = properties.layers.firstIndex(where: { $0.name == name }) else {
            throw DatasetError(.notFound, "layer '\(name)'", "no such layer")
        }
        change(&properties.layers[i])
        try save()
    }

    // MARK: Mags

    /// The places a mag's directory may be, most likely first.
    func magCandidates(_ layer: LayerProperties, _ mag: MagProperties) -> [String] {
        var result: [String] = []
        if let p = mag.path {
            result.append(p.hasPrefix("/") ? p : path + "/" + (p.hasPrefix("./") ? String(p.dropFirst(2)) : p))
        }
        result.append(layerPath(layer.name) + "/" + mag.mag.shortName)
        result.append(layerPath(layer.name) + "/" + mag.mag.longName)
        return result
    }

    /// The directory holding a mag's data.
    public func magPath(_ layer: LayerProperties, _ mag: MagProperties) -> String {
        let candidates = magCandidates(layer, mag)
        return candidates.first { PathOps.exists($0 + "/header.wkw") } ?? candidates[0]
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
        let directory = try MagDirectory.open(magPath(layer, entry))
        return MagView(layer: layer, mag: mag, directory: directory)
    }

    /// Adds a mag directory with a new `header.wkw` and its properties entry.
    @discardableResult
    public mutating func addMag(
        _ layerName: String, _ name: String, blockLength: Int = 32, fileLength: Int = 32, compress: Bool = false
    ) throws -> MagView {
        let layer = try layer(layerName)
        let mag = try Mag(parsing: name)
        if layer.mag(mag) != nil {
            throw DatasetError(.alreadyExists, "mag '\(name)'", "layer '\(layerName)' already has this mag")
        }
        guard let voxelType = layer.declaredVoxelType else {
            throw DatasetError(.invalidProperties, propertiesPath, "layer '\(layerName)' has an unknown element class '\(layer.elementClass)'")
        }
        let header: WKWHeader
        do {
            header = try WKWHeader(
                blockLength: blockLength, fileLength: fileLength, blockType: compress ? .lz4hc : .raw,
                voxelType: voxelType, channels: layer.numChannels)
        } catch let error as WKWError {
            throw DatasetError(.invalidArgument, blockLength & (blockLength - 1) != 0 || blockLength < 1 || blockLength > 128 ? "--block-len" : "--file-len", error.reason)
        }
        let directoryPath = layerPath(layerName) + "/" + mag.shortName
        if PathOps.exists(directoryPath) {
            throw DatasetError(.alreadyExists, directoryPath, "mag directory already exists on disk")
        }
        let directory = try MagDirectory.create(directoryPath, header: header)
        var entry = MagProperties(mag: mag, path: "./\(layerName)/\(mag.shortName)", cubeLength: header.fileEdge)
        if layer.usesWkwResolutions { entry.path = nil }
        try updateLayer(layerName) { layer in
            layer.mags.append(entry)
            layer.mags.sort { $0.mag < $1.mag }
        }
        return MagView(layer: try self.layer(layerName), mag: mag, directory: directory)
    }

    /// Grows a layer's bounding box to cover `box` (mag-1 voxels) and saves the properties.
    public mutating func growBoundingBox(_ layerName: String, toCover box: Box) throws {
        let current = try layer(layerName).boundingBox
        let grown = current.union(box)
        guard grown != current else { return }
        try updateLayer(layerName) { $0.boundingBox = grown }
    }

    /// Writes voxels into a mag and grows the layer's bounding box.
    /// - Parameter box: the region in the mag's own voxels.
    public mutating func write(_ layerName: String, mag name: String, box: Box, bytes: UnsafeRawBufferPointer) throws {
        let view = try mag(layerName, name)
        try view.directory.write(box, from: bytes)
        try growBoundingBox(layerName, toCover: view.mag.toMag1(box))
    }
}

/// One mag of one layer, ready for region reads and writes in the mag's own voxels.
public struct MagView: Sendable {
    public let layer: LayerProperties
    public let mag: Mag
    public let directory: MagDirectory

    public var header: WKWHeader { directory.header }

    /// The layer's bounding box snapped outward to this mag's grid, in this mag's voxels.
    public var defaultBox: Box { mag.fromMag1(layer.boundingBox) }

    public func read(_ box: Box) throws -> [UInt8] { try directory.read(box) }

    /// Reads `box` into `destination`, which holds exactly its bytes.
    public func read(_ box: Box, into destination: UnsafeMutableRawBufferPointer) throws {
        try directory.read(box, into: destination)
    }

    /// Asks the kernel to start fetching the first stored bytes of `box` (advice only).
    public func prefetch(_ box: Box) throws { try directory.prefetch(box) }
}
