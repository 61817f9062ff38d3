public import Formats

/// A magnification: how many mag-1 voxels one voxel of this mag covers along x, y and z.
public struct Mag: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var factors: Vec3

    public init(_ x: Int, _ y: Int, _ z: Int) { factors = Vec3(x, y, z) }

    /// Parses a mag directory name or argument: `2`, `2-2-1`, `1-1-1`.
    /// - Throws: `DatasetError` unless every factor is a positive power of two.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 1 || parts.count == 3, parts.allSatisfy({ $0 != nil }) else {
            throw DatasetError(.invalidArgument, "mag '\(text)'", "expected a mag like 1, 2 or 2-2-1")
        }
        let values = parts.map { $0! }
        guard values.allSatisfy(Mag.isValidFactor) else {
            throw DatasetError(.invalidArgument, "mag '\(text)'", "every factor must be a power of two up to \(Mag.largestFactor)")
        }
        self = values.count == 1 ? Mag(values[0], values[0], values[0]) : Mag(values[0], values[1], values[2])
    }

    /// The largest factor accepted: far beyond any real pyramid, small enough that no
    /// coordinate arithmetic overflows.
    public static let largestFactor = 1 << 16

    static func isValidFactor(_ v: Int) -> Bool { v > 0 && v <= largestFactor && v & (v - 1) == 0 }

    /// Parses a properties entry: an int or `[x, y, z]`, powers of two.
    init?(json: JSONValue) {
        if let i = json.intValue, Mag.isValidFactor(i) {
            self.init(i, i, i)
        } else if let items = json.arrayValue, items.count == 3, let x = items[0].intValue, let y = items[1].intValue,
            let z = items[2].intValue, [x, y, z].allSatisfy(Mag.isValidFactor)
        {
            self.init(x, y, z)
        } else {
            return nil
        }
    }

    public var isIsotropic: Bool { factors.x == factors.y && factors.y == factors.z }
    /// The directory name the reference gives it: `2` or `2-2-1`.
    public var shortName: String { isIsotropic ? "\(factors.x)" : longName }
    /// The long form `2-2-2`, which older datasets use.
    public var longName: String { "\(factors.x)-\(factors.y)-\(factors.z)" }
    public var description: String { shortName }
    var json: JSONValue { .array([.int(Int64(factors.x)), .int(Int64(factors.y)), .int(Int64(factors.z))]) }

    public static func < (a: Mag, b: Mag) -> Bool {
        (a.factors.x * a.factors.y * a.factors.z, a.factors.x, a.factors.y, a.factors.z)
            < (b.factors.x * b.factors.y * b.factors.z, b.factors.x, b.factors.y, b.factors.z)
    }

    /// A box in mag-1 voxels, snapped outward to this mag's grid, in this mag's voxels.
    public func fromMag1(_ box: Box) -> Box {
        let lo = box.offset.floorDiv(factors)
        let hi = box.end.ceilDiv(factors)
        return Box(offset: lo, size: hi - lo)
    }

    /// A box in this mag's voxels, in mag-1 voxels.
    public func toMag1(_ box: Box) -> Box {
        Box(offset: box.offset * factors, size: box.size * factors)
    }
}
