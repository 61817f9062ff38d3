public import Foundation
public import Formats

/// `datasource-properties.json`: every schema the reference has written, read and written back
/// in the spelling it came in, with unknown fields kept.
public struct DatasetProperties: Sendable {
    public static let fileName = "datasource-properties.json"

    /// The `id` object (`name`, `team`, anything else) as found.
    public var id: JSONValue
    /// Voxel size in `unit`s along x, y, z.
    public var voxelSize: [Double]
    public var unit: String
    /// The old writers' `scale: [x, y, z]` instead of `{factor, unit}`.
    public var scaleIsList: Bool
    public var layers: [LayerProperties]
    /// Top-level fields other than id, scale and dataLayers (version, view configuration, ...).
    public var extra: [(String, JSONValue)]

    public init(name: String, voxelSize: [Double], unit: String) {
        id = .object([("name", .string(name)), ("team", .string(""))])
        self.voxelSize = voxelSize
        self.unit = unit
        scaleIsList = false
        layers = []
        extra = [("version", .int(1))]
    }

    public var name: String { id["name"]?.stringValue ?? "" }

    public func layer(named name: String) -> LayerProperties? { layers.first { $0.name == name } }
}

/// One entry of `dataLayers`.
public struct LayerProperties: Sendable {
    public enum Category: String, Sendable, CaseIterable { case color, segmentation }

    public var name: String
    public var category: Category
    /// In mag-1 voxels; an empty box (size 0) means nothing written yet.
    public var boundingBox: Box
    public var dataFormat: String
    /// `dataFormat` as a format wkfs knows; nil for others (kept as written).
    public var format: DataFormat? { DataFormat(rawValue: dataFormat) }
    public var mags: [MagProperties]
    public var numChannels: Int
    public var elementClass: String
    /// `largestSegmentId` as found (a number, null, or the bigint object).
    public var largestSegmentId: JSONValue?
    /// Old writers: `wkwResolutions` instead of `mags`, `num_channels` instead of `numChannels`.
    public var usesWkwResolutions: Bool
    public var usesSnakeNumChannels: Bool
    public var extra: [(String, JSONValue)]

    public init(name: String, category: Category, voxelType: VoxelType, channels: Int) {
        self.name = name
        self.category = category
        boundingBox = Box(offset: .zero, size: .zero)
        dataFormat = "wkw"
        mags = []
        numChannels = channels
        elementClass = ElementClass.name(voxelType, channels: channels)
        largestSegmentId = nil
        usesWkwResolutions = false
        usesSnakeNumChannels = false
        extra = []
    }

    public func mag(_ mag: Mag) -> MagProperties? { mags.first { $0.mag == mag } }

    /// The per-channel voxel type the properties describe (the mag headers are the final word).
    public var declaredVoxelType: VoxelType? { ElementClass.voxelType(elementClass, channels: numChannels) }
}

/// One entry of `mags` (or `wkwResolutions`).
public struct MagProperties: Sendable {
    public var mag: Mag
    /// The mag directory relative to the dataset (`./color/1`), or absolute; nil when absent.
    public var path: String?
    public var cubeLength: Int?
    public var axisOrder: JSONValue?
    public var extra: [(String, JSONValue)]
    /// The mag as it was spelled (`2` or `[2, 2, 2]`), kept while it still means `mag`.
    var spelling: JSONValue?

    public init(mag: Mag, path: String?, cubeLength: Int?) {
        self.mag = mag
        self.path = path
        self.cubeLength = cubeLength
        axisOrder = Self.channelFirstAxes
        extra = []
    }

    /// The axes of every mag wkfs writes: (c, x, y, z).
    public static let channelFirstAxes: JSONValue = .object([("c", .int(0)), ("x", .int(1)), ("y", .int(2)), ("z", .int(3))])
}

// MARK: - Reading

extension DatasetProperties {
    /// Parses the text of a properties file.
    /// - Parameter file: the path, named in every error.
    public static func decode(_ data: Data, file: String) throws -> DatasetProperties {
        let json: JSONValue
        do {
            json = try JSONValue.parse(data)
        } catch {
            throw DatasetError(.invalidProperties, file, "not valid JSON (\(Self.syntaxProblem(data)))")
        }
        return try DatasetProperties(json: json, file: file)
    }

    /// Where and why JSON text does not parse, as "line L, column C: reason" when the parser says where.
    private static func syntaxProblem(_ data: Data) -> String {
        guard (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) == nil else {
            return "unsupported JSON value"
        }
        var reason = "syntax error"
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            reason = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String) ?? "\(error)"
        }
        if data.isEmpty { return "the file is empty" }
        // "... around character 17." -> line and column.
        if let range = reason.range(of: "character "),
            let offset = Int(reason[range.upperBound...].prefix(while: \.isNumber)), offset <= data.count
        {
            let before = data.prefix(offset)
            let line = before.filter { $0 == 0x0A }.count + 1
            let column = offset - (before.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0) + 1
            return "line \(line), column \(column): \(reason)"
        }
        return reason
    }

    init(json: JSONValue, file: String) throws {
        func bad(_ field: String, _ why: String) -> DatasetError {
            DatasetError(.invalidProperties, file, "field '\(field)': \(why)")
        }
        guard let pairs = json.objectPairs else { throw bad("(top level)", "expected a JSON object") }
        guard let id = json["id"], id.objectPairs != nil else { throw bad("id", "missing or not an object") }
        self.id = id

        guard let scale = json["scale"] else { throw bad("scale", "missing") }
        let factor: JSONValue
        if scale.arrayValue != nil {
            (factor, unit, scaleIsList) = (scale, "nanometer", true)
        } else if let f = scale["factor"] {
            factor = f
            unit = scale["unit"]?.stringValue ?? "nanometer"
            scaleIsList = false
        } else {
            throw bad("scale", "expected [x, y, z] or {\"factor\": [x, y, z], \"unit\": ...}")
        }
        guard let items = factor.arrayValue, items.count == 3, let values = Optional(items.compactMap(\.doubleValue)),
            values.count == 3, values.allSatisfy({ $0 > 0 })
        else { throw bad("scale", "expected three positive numbers") }
        voxelSize = values

        guard let layerList = json["dataLayers"]?.arrayValue else { throw bad("dataLayers", "missing or not a list") }
        layers = try layerList.enumerated().map { i, layer in try LayerProperties(json: layer, index: i, file: file) }
        var seen = Set<String>()
        for layer in layers where !seen.insert(layer.name).inserted {
            throw bad("dataLayers", "layer name '\(layer.name)' appears twice")
        }
        extra = pairs.filter { !["id", "scale", "dataLayers"].contains($0.0) }
    }
}

extension LayerProperties {
    init(json: JSONValue, index: Int, file: String) throws {
        func bad(_ field: String, _ why: String) -> DatasetError {
            DatasetError(.invalidProperties, file, "field 'dataLayers[\(index)].\(field)': \(why)")
        }
        guard let pairs = json.objectPairs else { throw bad("", "expected an object") }
        guard let name = json["name"]?.stringValue else { throw bad("name", "missing or not a string") }
        if let why = LayerProperties.invalidNameReason(name) { throw bad("name", why) }
        self.name = name
        guard let categoryText = json["category"]?.stringValue, let category = Category(rawValue: categoryText) else {
            throw bad("category", "must be \"color\" or \"segmentation\"")
        }
        self.category = category

        guard let box = json["boundingBox"], let topLeft = box["topLeft"]?.arrayValue, topLeft.count == 3,
            let x = topLeft[0].intValue, let y = topLeft[1].intValue, let z = topLeft[2].intValue,
            let width = box["width"]?.intValue, let height = box["height"]?.intValue, let depth = box["depth"]?.intValue,
            width >= 0, height >= 0, depth >= 0
        else { throw bad("boundingBox", "expected {\"topLeft\": [x, y, z], \"width\", \"height\", \"depth\"} with sizes ≥ 0") }
        let limit = 1 << 31
        guard [x, y, z, width, height, depth].allSatisfy({ abs($0) < limit }) else {
            throw bad("boundingBox", "coordinates must lie within ±2^31")
        }
        boundingBox = Box(offset: Vec3(x, y, z), size: Vec3(width, height, depth))

        dataFormat = json["dataFormat"]?.stringValue ?? "wkw"
        usesSnakeNumChannels = json["numChannels"] == nil && json["num_channels"] != nil
        let channels = json["numChannels"] ?? json["num_channels"] ?? .int(1)
        guard let numChannels = channels.intValue, numChannels >= 1 else { throw bad("numChannels", "must be a positive integer") }
        self.numChannels = numChannels
        guard let elementClass = json["elementClass"]?.stringValue else { throw bad("elementClass", "missing") }
        self.elementClass = elementClass
        if DataFormat(rawValue: dataFormat) != nil, ElementClass.voxelType(elementClass, channels: numChannels) == nil {
            throw bad("elementClass", "'\(elementClass)' with \(numChannels) channel(s) is not a known voxel type")
        }
        largestSegmentId = json["largestSegmentId"]

        let resolutionStyle = json["mags"] == nil && json["wkwResolutions"] != nil
        usesWkwResolutions = resolutionStyle
        let magKey = resolutionStyle ? "wkwResolutions" : "mags"
        guard let magList = (json[magKey] ?? .array([])).arrayValue else { throw bad(magKey, "expected a list") }
        mags = try magList.enumerated().map { i, entry in
            guard let magJSON = entry[resolutionStyle ? "resolution" : "mag"], let mag = Mag(json: magJSON) else {
                throw bad("\(magKey)[\(i)]", "expected a mag (a power of two up to 65536, or [x, y, z] of them)")
            }
            var properties = MagProperties(mag: mag, path: entry["path"]?.stringValue, cubeLength: entry["cubeLength"]?.intValue)
            properties.axisOrder = entry["axisOrder"]
            properties.spelling = magJSON
            let known: Set = ["mag", "resolution", "path", "cubeLength", "axisOrder"]
            properties.extra = entry.objectPairs?.filter { !known.contains($0.0) } ?? []
            return properties
        }
        var seenMags = Set<Mag>()
        for mag in mags where !seenMags.insert(mag.mag).inserted {
            throw bad(magKey, "mag \(mag.mag) appears twice")
        }
        let known: Set = [
            "name", "category", "boundingBox", "dataFormat", "mags", "wkwResolutions", "numChannels", "num_channels",
            "elementClass", "largestSegmentId",
        ]
        extra = pairs.filter { !known.contains($0.0) }
    }

    /// Why `name` cannot be a layer (or directory) name inside a dataset, or nil when it can.
    public static func invalidNameReason(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name == "." || name == ".." { return "'\(name)' would leave the dataset" }
        if name.contains("/") { return "'\(name)' contains '/', so it would leave the dataset" }
        if name.hasPrefix(".") { return "'\(name)' starts with '.' (hidden names are reserved)" }
        if name.utf8.contains(0) { return "contains a NUL byte" }
        if name == DatasetProperties.fileName { return "'\(name)' is the properties file" }
        return nil
    }
}

// MARK: - Writing

extension DatasetProperties {
    public var json: JSONValue {
        let scale: JSONValue =
            scaleIsList
            ? .array(voxelSize.map(JSONValue.double))
            : .object([("factor", .array(voxelSize.map(JSONValue.double))), ("unit", .string(unit))])
        return .object([("id", id), ("scale", scale), ("dataLayers", .array(layers.map(\.json)))] + extra)
    }

    /// The file's text: 4-space indentation like the reference, no trailing newline.
    public func encoded() -> Data { Data(json.pretty().utf8) }
}

extension LayerProperties {
    var json: JSONValue {
        let box: JSONValue = .object([
            ("topLeft", .array(boundingBox.offset.array.map { .int(Int64($0)) })),
            ("width", .int(Int64(boundingBox.size.x))),
            ("height", .int(Int64(boundingBox.size.y))),
            ("depth", .int(Int64(boundingBox.size.z))),
        ])
        var pairs: [(String, JSONValue)] = [
            ("name", .string(name)), ("category", .string(category.rawValue)), ("boundingBox", box),
            ("dataFormat", .string(dataFormat)),
        ]
        if usesWkwResolutions {
            pairs.append(("wkwResolutions", .array(mags.map { $0.json(resolutionStyle: true) })))
        } else {
            pairs.append(("mags", .array(mags.map { $0.json(resolutionStyle: false) })))
        }
        if let largestSegmentId { pairs.append(("largestSegmentId", largestSegmentId)) }
        pairs.append((usesSnakeNumChannels ? "num_channels" : "numChannels", .int(Int64(numChannels))))
        pairs.append(("elementClass", .string(elementClass)))
        return .object(pairs + extra)
    }
}

extension MagProperties {
    func json(resolutionStyle: Bool) -> JSONValue {
        let magJSON = spelling.flatMap { Mag(json: $0) == mag ? $0 : nil } ?? mag.json
        var pairs: [(String, JSONValue)] = [(resolutionStyle ? "resolution" : "mag", magJSON)]
        if let path { pairs.append(("path", .string(path))) }
        if let cubeLength { pairs.append(("cubeLength", .int(Int64(cubeLength)))) }
        if let axisOrder, !resolutionStyle { pairs.append(("axisOrder", axisOrder)) }
        return .object(pairs + extra)
    }
}
