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

/// `color` or `segmentation`.
struct CategoryArgument: ExpressibleByArgument, Sendable {
    var category: LayerProperties.Category
    init?(argument: String) {
        guard let category = LayerProperties.Category(rawValue: argument) else { return nil }
        self.category = category
    }
    static var allValueStrings: [String] { ["color", "segmentation"] }
}

/// Options shared by `add-mag` and `copy`.
struct StorageOptions: ParsableArguments {
    @Option(name: .customLong("block-len"), help: "Voxels per block edge: a power of two from 1 to 128.")
    var blockLength: Int?

    @Option(name: .customLong("file-len"), help: "Blocks per file edge: a power of two from 1 to 128.")
    var fileLength: Int?

    @Flag(inversion: .prefixedNo, help: "Compress blocks with LZ4HC (block type 3), or store them raw.")
    var compress: Bool?

    func validate() throws {
        for (name, value) in [("--block-len", blockLength), ("--file-len", fileLength)] {
            if let value, value < 1 || value > 128 || value & (value - 1) != 0 {
                throw ValidationError("\(name) \(value) is not a power of two from 1 to 128")
            }
        }
    }
}

