/// Three integers in x, y, z order: a voxel position, a size or a file index.
public struct Vec3: Hashable, Sendable, CustomStringConvertible {
    public var x: Int
    public var y: Int
    public var z: Int

    public init(_ x: Int, _ y: Int, _ z: Int) {
        self.x = x
        self.y = y
        self.z = z
    }

    public init(repeating value: Int) { self.init(value, value, value) }

    public static let zero = Vec3(0, 0, 0)

    public var description: String { "\(x),\(y),\(z)" }
    public var volume: Int { x * y * z }
    public var array: [Int] { [x, y, z] }

    public static func + (a: Vec3, b: Vec3) -> Vec3 { Vec3(a.x + b.x, a.y + b.y, a.z + b.z) }
    public static func - (a: Vec3, b: Vec3) -> Vec3 { Vec3(a.x - b.x, a.y - b.y, a.z - b.z) }
    public static func * (a: Vec3, b: Vec3) -> Vec3 { Vec3(a.x * b.x, a.y * b.y, a.z * b.z) }
    public static func * (a: Vec3, k: Int) -> Vec3 { Vec3(a.x * k, a.y * k, a.z * k) }

    public func map(_ f: (Int) -> Int) -> Vec3 { Vec3(f(x), f(y), f(z)) }
    public static func min(_ a: Vec3, _ b: Vec3) -> Vec3 { Vec3(Swift.min(a.x, b.x), Swift.min(a.y, b.y), Swift.min(a.z, b.z)) }
    public static func max(_ a: Vec3, _ b: Vec3) -> Vec3 { Vec3(Swift.max(a.x, b.x), Swift.max(a.y, b.y), Swift.max(a.z, b.z)) }

    /// Floor division by `d` per axis (correct for negative values too).
    public func floorDiv(_ d: Vec3) -> Vec3 {
        func fd(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
        return Vec3(fd(x, d.x), fd(y, d.y), fd(z, d.z))
    }

    /// Ceiling division by `d` per axis.
    public func ceilDiv(_ d: Vec3) -> Vec3 {
        (self + d - Vec3(1, 1, 1)).floorDiv(d)
    }
}

/// An axis-aligned box of voxels: `offset` is the first voxel, `size` the extent.
public struct Box: Hashable, Sendable, CustomStringConvertible {
    public var offset: Vec3
    public var size: Vec3

    public init(offset: Vec3, size: Vec3) {
        self.offset = offset
        self.size = size
    }

    public var end: Vec3 { offset + size }
    public var isEmpty: Bool { size.x <= 0 || size.y <= 0 || size.z <= 0 }
    public var voxelCount: Int { isEmpty ? 0 : size.volume }

    /// Bytes of the box's voxels at `voxelSize` bytes each; nil when that overflows.
    public func byteCount(voxelSize: Int) -> Int? {
        if isEmpty { return 0 }
        let (xy, o1) = size.x.multipliedReportingOverflow(by: size.y)
        let (xyz, o2) = xy.multipliedReportingOverflow(by: size.z)
        let (bytes, o3) = xyz.multipliedReportingOverflow(by: voxelSize)
        return o1 || o2 || o3 ? nil : bytes
    }
    public var description: String { "offset \(offset) size \(size)" }

    /// The overlap of two boxes, or nil when they do not overlap.
    public func intersection(_ other: Box) -> Box? {
        let lo = Vec3.max(offset, other.offset)
        let hi = Vec3.min(end, other.end)
        let box = Box(offset: lo, size: hi - lo)
        return box.isEmpty ? nil : box
    }

    /// The smallest box covering both; an empty box is neutral.
    public func union(_ other: Box) -> Box {
        if isEmpty { return other }
        if other.isEmpty { return self }
        let lo = Vec3.min(offset, other.offset)
        let hi = Vec3.max(end, other.end)
        return Box(offset: lo, size: hi - lo)
    }

    /// The box snapped outward to a grid of cell size `cell`, in units of cells.
    public func cellRange(_ cell: Vec3) -> Box {
        let lo = offset.floorDiv(cell)
        let hi = end.ceilDiv(cell)
        return Box(offset: lo, size: hi - lo)
    }

    /// Every cell position inside the box, z outermost, x innermost.
    public var positions: [Vec3] {
        guard !isEmpty else { return [] }
        var result: [Vec3] = []
        result.reserveCapacity(voxelCount)
        for z in offset.z..<end.z {
            for y in offset.y..<end.y {
                for x in offset.x..<end.x { result.append(Vec3(x, y, z)) }
            }
        }
        return result
    }
}
