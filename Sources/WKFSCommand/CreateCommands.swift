import ArgumentParser
import Formats
import WebKnossos

struct CreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create an empty dataset.",
        discussion: "Example: wkfs create my_dataset --voxel-size 11.24,11.24,25")

    @Argument(help: "The new dataset directory (missing or empty).") var dataset: String
    @Option(name: .customLong("voxel-size"), help: "Voxel size X,Y,Z in the unit.") var voxelSize: VoxelSizeArgument
    @Option(help: "Unit of the voxel size.") var unit = "nanometer"

    func run() throws {
        _ = try Dataset.create(dataset, voxelSize: voxelSize.values, unit: unit)
    }
}

struct AddLayerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-layer",
        abstract: "Add an empty layer to a dataset.",
        discussion: "Example: wkfs add-layer my_dataset color --category color --dtype uint8 --channels 3")

    @Argument(help: "The dataset directory.") var dataset: String
    @Argument(help: "The new layer's name.") var layer: String
    @Option(help: "color or segmentation.") var category: CategoryArgument
    @Option(help: "Type of one channel, a numpy name: uint8 … uint64, int8 … int64, float32, float64.")
    var dtype: DTypeArgument
    @Option(help: "Channels per voxel.") var channels = 1
    @Option(name: .customLong("largest-segment-id"), help: "Largest segment id (segmentation layers).")
    var largestSegmentId: UInt64?
    @Option(name: .customLong("data-format"), help: "wkw or zarr3 (webknossos's default since 2025).")
    var dataFormat = DataFormatArgument(.wkw)

    func validate() throws {
        guard channels >= 1 else { throw ValidationError("--channels must be at least 1") }
    }

    func run() throws {
        var ds = try Dataset.open(dataset)
        try ds.addLayer(
            layer, category: category.value, voxelType: dtype.type, channels: channels, largestSegmentId: largestSegmentId,
            format: dataFormat.value)
    }
}

struct AddMagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-mag",
        abstract: "Add a mag (a WKW mag directory or a Zarr3 array, as the layer's format) to a layer.",
        discussion: """
            Example: wkfs add-mag my_dataset color 2-2-1 --block-len 32 --file-len 32 --compress
            Zarr3 layers: wkfs add-mag my_dataset color 2 --chunk-shape 32 --shard-shape 1024 --compress
            """)

    @OptionGroup var location: MagLocation
    @OptionGroup var storage: StorageOptions

    func run() throws {
        var ds = try Dataset.open(location.dataset)
        let block = storage.block ?? 32
        try ds.addMag(
            location.layer, location.mag, blockLength: block, fileLength: storage.fileBlocks(block: block) ?? 32,
            compress: storage.compress ?? false)
    }
}

struct AddSymlinkLayerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-symlink-layer",
        abstract: "Add a layer that is a relative symbolic link to another dataset's layer.",
        discussion: "Example: wkfs add-symlink-layer copy_of_dataset my_dataset/segmentation --name seg")

    @Argument(help: "The dataset directory.") var dataset: String
    @Argument(help: "The other dataset's layer directory.") var targetLayerDirectory: String
    @Option(help: "Name of the new layer (default: the target's name).") var name: String?

    func run() throws {
        var ds = try Dataset.open(dataset)
        try ds.addSymlinkLayer(target: targetLayerDirectory, name: name)
    }
}
