import ArgumentParser
import Foundation
import Formats
import WebKnossos

/// Three integers written `X,Y,Z`.
struct Triple: ExpressibleByArgument, Sendable {
    var value: Vec3

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 3, let x = parts[0], let y = parts[1], let z = parts[2] else { return nil }
        value = Vec3(x, y, z)
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// Three positive numbers written `X,Y,Z`.
struct VoxelSizeArgument: ExpressibleByArgument, Sendable {
    var values: [Double]

    init?(argument: String) {
        let parts = argument.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 3, parts.allSatisfy({ ($0 ?? 0) > 0 && $0!.isFinite }) else { return nil }
        values = parts.map { $0! }
    }
}

/// A numpy dtype name: uint8 … uint64, int8 … int64, float32, float64.
struct DTypeArgument: ExpressibleByArgument, Sendable {
    var type: VoxelType
    init?(argument: String) {
        guard let type = VoxelType(name: argument) else { return nil }
        self.type = type
    }
    static var allValueStrings: [String] { VoxelType.allCases.map(\.name) }
}

/// A value named on the command line by its raw value: `color`, `zarr3`, `constant-z`, `median`.
struct NamedArgument<Value: RawRepresentable & CaseIterable & Sendable>: ExpressibleByArgument, Sendable where Value.RawValue == String {
    var value: Value
    init(_ value: Value) { self.value = value }
    init?(argument: String) {
        guard let value = Value(rawValue: argument) else { return nil }
        self.value = value
    }
    var defaultValueDescription: String { value.rawValue }
    static var allValueStrings: [String] { Value.allCases.map(\.rawValue) }
}

/// `color` or `segmentation`.
typealias CategoryArgument = NamedArgument<LayerProperties.Category>
/// `wkw` or `zarr3`.
typealias DataFormatArgument = NamedArgument<DataFormat>

/// Options shared by `add-mag` and `copy`.
struct StorageOptions: ParsableArguments {
    @Option(name: .customLong("block-len"), help: "Voxels per block (Zarr3: chunk) edge: a power of two from 1 to 128.")
    var blockLength: Int?

    @Option(name: .customLong("file-len"), help: "Blocks per file (Zarr3: chunks per shard) edge: a power of two from 1 to 128.")
    var fileLength: Int?

    @Option(name: .customLong("chunk-shape"), help: "Voxels per chunk (block) edge, webknossos's name for --block-len.")
    var chunkShape: Int?

    @Option(name: .customLong("shard-shape"), help: "Voxels per shard (file) edge: a multiple of the chunk shape.")
    var shardShape: Int?

    @Flag(inversion: .prefixedNo, help: "Compress blocks (WKW: LZ4HC, block type 3; Zarr3: zstd level 5), or store them raw.")
    var compress: Bool?

    func validate() throws {
        for (name, value) in [("--block-len", blockLength), ("--file-len", fileLength), ("--chunk-shape", chunkShape), ("--shard-shape", shardShape)] {
            if let value, value < 1 || value & (value - 1) != 0 {
                throw ValidationError("\(name) \(value) is not a power of two")
            }
        }
        for (name, value) in [("--block-len", blockLength), ("--file-len", fileLength)] {
            if let value, value > 128 { throw ValidationError("\(name) \(value) is not a power of two from 1 to 128") }
        }
        if let chunkShape, let blockLength, chunkShape != blockLength {
            throw ValidationError("--chunk-shape \(chunkShape) and --block-len \(blockLength) disagree (they name the same thing)")
        }
        if shardShape != nil && fileLength != nil {
            throw ValidationError("give --shard-shape (voxels) or --file-len (blocks), not both")
        }
        if let shardShape, shardShape < (chunkShape ?? blockLength ?? 32) {
            throw ValidationError("--shard-shape \(shardShape) is smaller than the chunk shape \(chunkShape ?? blockLength ?? 32)")
        }
    }

    /// Voxels per block edge, when given.
    var block: Int? { chunkShape ?? blockLength }

    /// Blocks per file edge, when given (from --file-len or --shard-shape).
    func fileBlocks(block: Int) -> Int? { fileLength ?? shardShape.map { $0 / block } }
}

