import Formats

/// How the voxels of one block of the finer mag become one voxel of the coarser one.
public enum Interpolation: String, CaseIterable, Sendable {
    /// The most frequent value; on a tie the one met first (webknossos's order: y fastest,
    /// then x, then z). The default for segmentation: ids are never mixed.
    case mode
    /// The mean of the two middle values, truncated toward zero (integers). The default for color.
    case median
    /// One voxel of the block, chosen as webknossos (scipy's zoom) chooses it.
    case nearest
    case max
    case min
    /// The arithmetic mean, truncated toward zero (integers). Not a webknossos mode.
    case mean

    /// webknossos's default for a layer category.
    public static func `default`(forSegmentation segmentation: Bool) -> Interpolation {
        segmentation ? .mode : .median
    }
}

/// Reduces a region of the finer mag (already mirrored at the layer's edges) to the coarser one,
/// channel by channel, voxel for voxel as webknossos 4.3.3 does.
struct DownsampleKernel: Sendable {
    let voxelType: VoxelType
    let channels: Int
    let factor: Vec3
    let interpolation: Interpolation

    /// Per axis, for `nearest`: the source index (in the source region) of each target voxel.
    struct NearestMaps: Sendable {
        var x: [Int]
        var y: [Int]
        var z: [Int]
    }

    /// `source`: the voxels (z, y, x, c in C order) of a region `target * factor` voxels large;
    /// `target`: the size of the result, written to `destination` in the same order.
    func reduce(_ source: UnsafeRawPointer, target: Vec3, into destination: UnsafeMutableRawPointer, nearest: NearestMaps?) throws {
        switch voxelType {
        case .uint8: try run(UInt8.self, source, target, destination, nearest)
        case .uint16: try run(UInt16.self, source, target, destination, nearest)
        case .uint32: try run(UInt32.self, source, target, destination, nearest)
        case .uint64: try run(UInt64.self, source, target, destination, nearest)
        case .int8: try run(Int8.self, source, target, destination, nearest)
        case .int16: try run(Int16.self, source, target, destination, nearest)
        case .int32: try run(Int32.self, source, target, destination, nearest)
        case .int64: try run(Int64.self, source, target, destination, nearest)
        case .float32: try run(Float.self, source, target, destination, nearest)
        case .float64: try run(Double.self, source, target, destination, nearest)
        }
    }

    private func run<T: DownsampleValue>(
        _: T.Type, _ source: UnsafeRawPointer, _ target: Vec3, _ destination: UnsafeMutableRawPointer, _ nearest: NearestMaps?
    ) throws {
        let region = Region(source: source, destination: destination)
        let f = factor, c = channels
        let sourceRow = target.x * f.x * c
        let sourcePlane = sourceRow * target.y * f.y
        let count = f.x * f.y * f.z
        let interpolation = self.interpolation
        // Offsets of a block's voxels from its first one, in webknossos's order: y fastest,
        // then x, then z (it decides mode's ties).
        var offsets: [Int] = []
        for dz in 0..<f.z {
            for dx in 0..<f.x {
                for dy in 0..<f.y { offsets.append(dz * sourcePlane + dy * sourceRow + dx * c) }
            }
        }
        let blockOffsets = offsets
        // Planes of the target are independent: spread over the cores.
        try Parallel.forEach(target.z) { tz in
            let src = region.source.assumingMemoryBound(to: T.self)
            let out = region.destination.assumingMemoryBound(to: T.self) + tz * target.y * target.x * c
            withUnsafeTemporaryAllocation(of: T.self, capacity: count) { values in
                for ty in 0..<target.y {
                    for tx in 0..<target.x {
                        for ch in 0..<c {
                            let o = ((ty * target.x) + tx) * c + ch
                            if let nearest {
                                out[o] = src[nearest.z[tz] * sourcePlane + nearest.y[ty] * sourceRow + nearest.x[tx] * c + ch]
                                continue
                            }
                            let first = src + tz * f.z * sourcePlane + ty * f.y * sourceRow + tx * f.x * c + ch
                            for i in 0..<count { values[i] = first[blockOffsets[i]] }
                            out[o] = T.reduce(values, interpolation)
                        }
                    }
                }
            }
        }
    }
}

/// The kernel's input and output, handed to the workers: each writes only its own planes.
private struct Region: @unchecked Sendable {
    let source: UnsafeRawPointer
    let destination: UnsafeMutableRawPointer
}

/// A voxel value type and webknossos's reductions of it.
protocol DownsampleValue: Comparable, Sendable {
    /// numpy's mean of the two middle values as webknossos computes it.
    static func middle(_ a: Self, _ b: Self) -> Self
    /// The mean of all values (wkfs's own mode).
    static func mean(_ values: UnsafeMutableBufferPointer<Self>) -> Self
    /// Whether the value is NaN (floats): webknossos's median of a block with a NaN is NaN.
    var isNaNValue: Bool { get }
}

extension DownsampleValue {
    var isNaNValue: Bool { false }

    @inline(__always)
    static func reduce(_ values: UnsafeMutableBufferPointer<Self>, _ interpolation: Interpolation) -> Self {
        let n = values.count
        switch interpolation {
        case .mode:
            // As webknossos counts: each value counts itself and the equal values after it, so
            // the first occurrence carries the full count and a strictly larger count wins: on a
            // tie the value met first (a NaN counts 1: it equals nothing, not even itself).
            var best = values[0]
            var allSame = true
            for i in 1..<n where values[i] != best { allSame = false; break }
            if allSame { return best }
            var bestCount = 1
            for j in 1..<n where values[j] == best { bestCount += 1 }
            if n > 2 {
                for i in 1..<(n - 1) {
                    let v = values[i]
                    var count = 1
                    for j in (i + 1)..<n where values[j] == v { count += 1 }
                    if count > bestCount {
                        best = v
                        bestCount = count
                    }
                }
            }
            return best
        case .median:
            if n == 1 { return values[0] }
            for i in 0..<n where values[i].isNaNValue { return values[i] }
            insertionSort(values)
            return n % 2 == 1 ? values[n / 2] : middle(values[n / 2 - 1], values[n / 2])
        case .max:
            var m = values[0]
            for i in 1..<n {
                if values[i].isNaNValue { return values[i] }
                if values[i] > m { m = values[i] }
            }
            return m
        case .min:
            var m = values[0]
            for i in 1..<n {
                if values[i].isNaNValue { return values[i] }
                if values[i] < m { m = values[i] }
            }
            return m
        case .mean:
            return mean(values)
        case .nearest:
            return values[0]  // the kernel picks nearest voxels itself
        }
    }

    @inline(__always)
    static func insertionSort(_ values: UnsafeMutableBufferPointer<Self>) {
        for i in 1..<values.count {
            let v = values[i]
            var j = i
            while j > 0 && values[j - 1] > v {
                values[j] = values[j - 1]
                j -= 1
            }
            values[j] = v
        }
    }
}

/// Integers: the middle of two values in double precision, truncated toward zero (numpy's
/// float64 mean cast back to the type).
protocol IntegerDownsampleValue: DownsampleValue, FixedWidthInteger {}

extension IntegerDownsampleValue {
    @inline(__always)
    static func middle(_ a: Self, _ b: Self) -> Self { truncating((Double(a) + Double(b)) / 2) }

    static func mean(_ values: UnsafeMutableBufferPointer<Self>) -> Self {
        var sum = 0.0
        for v in values { sum += Double(v) }
        return truncating(sum / Double(values.count))
    }

    /// A double cast to the type as numpy does on x86 (toward zero; 2^64 and beyond become 0
    /// for uint64, as webknossos's result shows).
    @inline(__always)
    static func truncating(_ value: Double) -> Self {
        let t = value.rounded(.towardZero)
        // Only 64-bit values round up past the type (Double(max) is max + 1 there); x86's
        // conversion gives the "indefinite" value then.
        if Self.bitWidth == 64 && t >= Double(Self.max) { return Self.isSigned ? Self.min : 0 }
        return Self(t)
    }
}

extension UInt8: IntegerDownsampleValue {}
extension UInt16: IntegerDownsampleValue {}
extension UInt32: IntegerDownsampleValue {}
extension UInt64: IntegerDownsampleValue {}
extension Int8: IntegerDownsampleValue {}
extension Int16: IntegerDownsampleValue {}
extension Int32: IntegerDownsampleValue {}
extension Int64: IntegerDownsampleValue {}

extension Float: DownsampleValue {
    /// In single precision, as numpy's float32 mean.
    static func middle(_ a: Float, _ b: Float) -> Float { (a + b) / 2 }
    static func mean(_ values: UnsafeMutableBufferPointer<Float>) -> Float {
        var sum = 0.0
        for v in values { sum += Double(v) }
        return Float(sum / Double(values.count))
    }
    var isNaNValue: Bool { isNaN }
}

extension Double: DownsampleValue {
    static func middle(_ a: Double, _ b: Double) -> Double { (a + b) / 2 }
    static func mean(_ values: UnsafeMutableBufferPointer<Double>) -> Double {
        var sum = 0.0
        for v in values { sum += v }
        return sum / Double(values.count)
    }
    var isNaNValue: Bool { isNaN }
}
