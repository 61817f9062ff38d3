public import Formats

/// What a Zarr3 layer needs beside its arrays, as webknossos 4.3 writes it: a `zarr.json` group
/// at the dataset root, and one per layer carrying OME-Zarr 0.5 `multiscales`, so that OME-Zarr
/// readers find the mags.
extension Dataset {
    /// The root group and `layer`'s group with its multiscales (mags in the properties' order),
    /// each replaced atomically. The root group is written only when missing.
    func writeZarrGroups(_ layer: LayerProperties) throws {
        let root = path + "/" + Zarr3Array.metadataName
        if !PathOps.exists(root) {
            try AtomicFile.write(root, Array(Self.zarrRootGroup.pretty().utf8))
        }
        try AtomicFile.write(layerPath(layer.name) + "/" + Zarr3Array.metadataName, Array(zarrLayerGroup(layer).pretty().utf8))
    }

    /// The dataset root's `zarr.json`.
    public static let zarrRootGroup: JSONValue = .object([("zarr_format", .int(3)), ("node_type", .string("group"))])

    /// A layer's `zarr.json`: a group with OME-Zarr 0.5 multiscales, one dataset per mag (its
    /// directory name), scaled by the voxel size times the mag.
    public func zarrLayerGroup(_ layer: LayerProperties, magName: ((MagProperties) -> String)? = nil) -> JSONValue {
        let unit = JSONValue.string(properties.unit)
        let axes: JSONValue = .array(
            [.object([("name", .string("c")), ("type", .string("channel"))])]
                + ["x", "y", "z"].map { .object([("name", .string($0)), ("type", .string("space")), ("unit", unit)]) })
        let datasets: [JSONValue] = layer.mags.map { entry in
            let scale = [1.0] + zip(properties.voxelSize, entry.mag.factors.array).map { $0 * Double($1) }
            let name = magName?(entry) ?? entry.path.map { String($0.split(separator: "/").last ?? "") } ?? entry.mag.shortName
            return .object([
                ("path", .string(name)),
                ("coordinateTransformations", .array([.object([("type", .string("scale")), ("scale", .array(scale.map(JSONValue.double)))])])),
            ])
        }
        return .object([
            ("zarr_format", .int(3)),
            ("node_type", .string("group")),
            (
                "attributes",
                .object([("ome", .object([("version", .string("0.5")), ("multiscales", .array([.object([("axes", axes), ("datasets", .array(datasets))])]))]))])
            ),
        ])
    }

    /// The properties as a Zarr3 dataset of the same layers shows them: every layer `zarr3`,
    /// each mag at `./LAYER/MAG` (its directory name here), no `cubeLength`.
    public func zarrViewProperties(magNames: (LayerProperties, MagProperties) -> String) -> DatasetProperties {
        var view = properties
        view.layers = properties.layers.filter { $0.format != nil }.map { layer in
            var layer = layer
            layer.dataFormat = DataFormat.zarr3.rawValue
            layer.usesWkwResolutions = false
            layer.mags = layer.mags.map { entry in
                var entry = entry
                entry.path = "./\(layer.name)/\(magNames(layer, entry))"
                entry.cubeLength = nil
                entry.axisOrder = MagProperties.channelFirstAxes
                return entry
            }
            return layer
        }
        return view
    }

    /// The fill value a new mag of `layer` takes, so that missing data reads the same in every
    /// mag (as downsampling keeps it): that of the first mag that opens; nil (zeros) when no mag
    /// is on this machine.
    /// - Throws: when mags are there but none opens (the fill value is unknown).
    func layerFillValue(_ layer: LayerProperties) throws -> [UInt8]? {
        var unreadable: (String, any Error)?
        for entry in layer.mags {
            let path = magPath(layer, entry)
            guard PathOps.exists(path) else { continue }
            do {
                return try Self.openStore(.zarr3, path).fillValue
            } catch {
                if unreadable == nil { unreadable = (path, error) }
            }
        }
        if let (path, error) = unreadable {
            throw DatasetError(.invalidProperties, path, "cannot read the fill value that a new mag of layer '\(layer.name)' must share", cause: error)
        }
        return nil
    }

    /// Whether a mag lies outside this dataset (another dataset's, referred to by path).
    func isForeign(_ layer: LayerProperties, _ entry: MagProperties) -> Bool {
        let mag = Self.realPath(magPath(layer, entry))
        let root = Self.realPath(path)
        return !mag.hasPrefix(root + "/")
    }

    /// Adds a Zarr3 mag to `layer`: an array of `chunk`-voxel chunks in `shard`-voxel shards
    /// (one chunk per file when they are equal), zstd-compressed or not, and its properties entry.
    /// A failed step leaves nothing behind.
    mutating func addZarrMag(_ layer: LayerProperties, _ name: String, chunk: Int, shard: Int, compress: Bool) throws -> MagView {
        guard let voxelType = layer.declaredVoxelType else {
            throw DatasetError(.invalidProperties, propertiesPath, "layer '\(layer.name)' has an unknown element class '\(layer.elementClass)'")
        }
        if let problem = Zarr3Array.shapeProblem(chunk: Vec3(repeating: chunk), shard: Vec3(repeating: shard)) {
            throw DatasetError(.invalidArgument, "chunk and shard shape", problem)
        }
        let fill = try layerFillValue(layer)
        return try addZarrMag(layer, name) { directory, size in
            try Zarr3Array.create(
                directory, voxelType: voxelType, channels: layer.numChannels, chunk: Vec3(repeating: chunk), shard: Vec3(repeating: shard),
                compress: compress, size: size, fill: fill)
        }
    }

    /// Adds a Zarr3 mag to `layer` exactly like the array `template` (chunks, shards, codecs,
    /// fill value), and its properties entry. A failed step leaves nothing behind.
    mutating func addZarrMag(_ layer: LayerProperties, _ name: String, like template: Zarr3Array) throws -> MagView {
        try addZarrMag(layer, name) { directory, size in try Zarr3Array.create(directory, like: template, size: size) }
    }

    /// Adds mag `name` to `layer`: `create` makes its array at a directory for a size (mag
    /// voxels), then the properties entry and the layer's groups follow.
    private mutating func addZarrMag(
        _ layer: LayerProperties, _ name: String, create: (_ directory: String, _ size: Vec3) throws -> Zarr3Array
    ) throws -> MagView {
        let mag = try Mag(parsing: name)
        if layer.mag(mag) != nil {
            throw DatasetError(.alreadyExists, "mag '\(name)'", "layer '\(layer.name)' already has this mag")
        }
        let directory = layerPath(layer.name) + "/" + mag.shortName
        if !(try removeIfLeftOfKilledRun(directory)) {
            throw DatasetError(.alreadyExists, directory, Self.inTheWay(directory, "mag directory"))
        }
        let array: Zarr3Array
        do {
            array = try create(directory, mag.fromMag1(layer.boundingBox).end)
        } catch let error as DatasetError {
            throw error
        } catch {
            throw DatasetError(.io, directory, "cannot create the mag", cause: error)
        }
        var entry = MagProperties(mag: mag, path: "./\(layer.name)/\(mag.shortName)", cubeLength: nil)
        if layer.usesWkwResolutions { entry.path = nil }
        let added = entry
        do {
            try updateLayer(layer.name) { layer in
                guard layer.mag(mag) == nil else {
                    throw DatasetError(.alreadyExists, "mag '\(name)'", "layer '\(layer.name)' already has this mag")
                }
                layer.mags.append(added)
                layer.mags.sort { $0.mag < $1.mag }
                // The box as it is now, under the lock (a write may have grown it meanwhile).
                try Zarr3Array.growShape(of: directory, toCover: mag.fromMag1(layer.boundingBox).end)
            }
        } catch {
            PathOps.remove(directory + "/" + Zarr3Array.metadataName)
            PathOps.remove(directory + "/" + Zarr3Array.lockFileName)
            try? PathOps.removeDirectory(directory)
            throw error
        }
        let updated = try self.layer(layer.name)
        do {
            try writeZarrGroups(updated)
        } catch {
            throw DatasetError(.io, layerPath(layer.name), "the mag was added, but the layer's zarr.json could not be rewritten", cause: error)
        }
        return MagView(layer: updated, mag: mag, store: array)
    }

    /// Grows the shape of every Zarr3 mag of `layer` to whole shards covering its bounding box,
    /// as webknossos does whenever the box grows. Mags of other datasets that the layer refers
    /// to (webknossos's `add_mag_as_ref`) are theirs: left alone, as webknossos does.
    func fitZarrShapes(_ layer: LayerProperties) throws {
        guard layer.format == .zarr3 else { return }
        for entry in layer.mags where !isForeign(layer, entry) {
            let end = entry.mag.fromMag1(layer.boundingBox).end
            do {
                try Zarr3Array.growShape(of: magPath(layer, entry), toCover: end)
            } catch {
                throw DatasetError(.io, magPath(layer, entry), "cannot update the array's shape", cause: error)
            }
        }
    }
}
