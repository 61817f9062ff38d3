import ArgumentParser
import Foundation
import Formats
import WebKnossos

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show a dataset's layers, mags, voxel types and bounding boxes.",
        discussion: "Example: wkfs info my_dataset --json")

    @Argument(help: "The dataset directory.") var dataset: String
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        let ds = try Dataset.open(dataset)
        let links = Dictionary(uniqueKeysWithValues: ds.symlinkLayers().map { ($0.name, $0) })
        var layersJSON: [JSONValue] = []
        var text = "dataset \(ds.path) (\(ds.properties.name))\n"
        let scale = ds.properties.voxelSize.map { JSONValue.format($0) }.joined(separator: " × ")
        text += "voxel size \(scale) \(ds.properties.unit)\n"
        for layer in ds.layers {
            let box = layer.boundingBox
            let dtype = layer.declaredVoxelType?.name ?? "?"
            text += "layer \(layer.name): \(layer.category.rawValue), \(dtype) × \(layer.numChannels) channel(s)"
            if let link = links[layer.name] { text += ", symbolic link to \(link.link)\(link.resolves ? "" : " (dangling)")" }
            text += ", data format \(layer.dataFormat)\(layer.format == nil ? " (unsupported)" : "")"
            text += "\n  bounding box: \(box.isEmpty ? "empty" : "offset \(box.offset) size \(box.size)") (mag-1 voxels)\n"
            var magsJSON: [JSONValue] = []
            for entry in layer.mags {
                let path = ds.magPath(layer, entry)
                var magJSON: [(String, JSONValue)] = [
                    ("mag", .string(entry.mag.shortName)),
                    ("factors", .array(entry.mag.factors.array.map { .int(Int64($0)) })),
                    ("path", .string(path)),
                ]
                do {
                    guard let format = layer.format else { throw CLIError("data format '\(layer.dataFormat)' is not supported") }
                    let store = try Dataset.openStore(format, path)
                    let files = try store.dataFiles().count
                    let block = store.blockShape, file = store.fileShape
                    let blockText = block.x == block.y && block.y == block.z ? "\(block.x)" : "\(block.x)×\(block.y)×\(block.z)"
                    let fileText = file.x == file.y && file.y == file.z ? "\(file.x)³" : "\(file.x)×\(file.y)×\(file.z)"
                    let name = format == .wkw ? ("block", "file") : ("chunk", "shard")
                    text += "  mag \(entry.mag.shortName): \(name.0) \(blockText), \(name.1) \(fileText) voxels, \(store.compressionName), \(files) file(s), \(path)\n"
                    magJSON += [
                        ("format", .string(format.rawValue)),
                        ("blockShape", .array(block.array.map { .int(Int64($0)) })),
                        ("fileShape", .array(file.array.map { .int(Int64($0)) })),
                        ("compression", .string(store.compressionName)),
                        ("voxelType", .string(store.voxelType.name)), ("channels", .int(Int64(store.channels))),
                        ("files", .int(Int64(files))),
                    ]
                    magJSON += store.describe()
                } catch {
                    text += "  mag \(entry.mag.shortName): cannot open \(path): \(error)\n"
                    magJSON.append(("error", .string("cannot open \(path): \(error)")))
                }
                magsJSON.append(.object(magJSON))
            }
            var layerJSON: [(String, JSONValue)] = [
                ("name", .string(layer.name)), ("category", .string(layer.category.rawValue)),
                ("dataFormat", .string(layer.dataFormat)),
                ("dtype", .string(dtype)), ("channels", .int(Int64(layer.numChannels))),
                ("elementClass", .string(layer.elementClass)),
                (
                    "boundingBox",
                    .object([
                        ("topLeft", .array(box.offset.array.map { .int(Int64($0)) })),
                        ("size", .array(box.size.array.map { .int(Int64($0)) })),
                    ])
                ),
                ("mags", .array(magsJSON)),
            ]
            if let link = links[layer.name] { layerJSON.append(("symlink", .string(link.link))) }
            if let id = layer.largestSegmentId { layerJSON.append(("largestSegmentId", id)) }
            layersJSON.append(.object(layerJSON))
        }
        if json {
            let all: JSONValue = .object([
                ("path", .string(ds.path)), ("name", .string(ds.properties.name)),
                ("voxelSize", .array(ds.properties.voxelSize.map(JSONValue.double))), ("unit", .string(ds.properties.unit)),
                ("layers", .array(layersJSON)),
            ])
            print(all.pretty())
        } else {
            print(text, terminator: "")
        }
    }
}
