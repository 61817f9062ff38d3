/// The type of one channel of one voxel, with its code in the WKW header.
public enum VoxelType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case uint8 = 1, uint16 = 2, uint32 = 3, uint64 = 4
    case float32 = 5, float64 = 6
    case int8 = 7, int16 = 8, int32 = 9, int64 = 10

    /// Bytes per channel.
    public var size: Int {
        switch self {
        case .uint8, .int8: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64: 8
        }
    }

    /// The numpy name (`uint8`, `float32`, ...), which is also the CLI's spelling.
    public var name: String {
        switch self {
        case .uint8: "uint8"
        case .uint16: "uint16"
        case .uint32: "uint32"
        case .uint64: "uint64"
        case .float32: "float32"
        case .float64: "float64"
        case .int8: "int8"
        case .int16: "int16"
        case .int32: "int32"
        case .int64: "int64"
        }
    }
    public var description: String { name }

    public var isFloat: Bool { self == .float32 || self == .float64 }
    public var isSigned: Bool { [.int8, .int16, .int32, .int64].contains(self) }

    /// Parses a numpy dtype name; nil when unknown.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }
}

/// How the blocks of a data file are stored.
public enum BlockType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case raw = 1, lz4 = 2, lz4hc = 3

    public var isCompressed: Bool { self != .raw }
    public var description: String {
        switch self {
        case .raw: "raw"
        case .lz4: "LZ4"
        case .lz4hc: "LZ4HC"
        }
    }
}
