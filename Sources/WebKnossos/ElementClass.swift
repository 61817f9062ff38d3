public import Formats

/// The `elementClass` of the properties: the per-channel type with its bits multiplied by the channel count.
public enum ElementClass {
    /// The name for `channels` channels of `type`: u8×3 is `uint24`, f32 is `float`, f32×2 `double`.
    public static func name(_ type: VoxelType, channels: Int) -> String {
        let bits = type.size * 8 * channels
        switch type {
        case .float32, .float64:
            return bits == 32 ? "float" : bits == 64 ? "double" : "float\(bits)"
        case .int8, .int16, .int32, .int64:
            return "int\(bits)"
        default:
            return "uint\(bits)"
        }
    }

    /// The per-channel type that `name` and `channels` describe; nil when they do not fit.
    public static func voxelType(_ name: String, channels: Int) -> VoxelType? {
        let total: Int
        let family: String
        switch name {
        case "float": (family, total) = ("float", 32)
        case "double": (family, total) = ("float", 64)
        default:
            let prefix = name.prefix(while: { $0.isLetter })
            guard let bits = Int(name.dropFirst(prefix.count)) else { return nil }
            (family, total) = (String(prefix), bits)
        }
        guard channels > 0, total % channels == 0 else { return nil }
        let bits = total / channels
        return VoxelType(name: family == "float" ? "float\(bits)" : "\(family)\(bits)")
    }
}
