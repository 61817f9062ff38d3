public import Formats

/// How the coarser mags are chosen, as webknossos's `SamplingModes`.
public enum SamplingMode: String, CaseIterable, Sendable {
    /// Steps that keep voxels as close to cubes as the voxel size allows (`2-2-1`, `4-4-2`).
    case anisotropic
    /// Every axis halved at every step (`2`, `4`).
    case isotropic
    /// x and y halved at every step, z never (`2-2-1`, `4-4-1`).
    case constantZ = "constant-z"
}

/// Which mags a downsampling builds, in order: webknossos 4.3.3's
/// `calculate_mags_to_downsample` and `calculate_default_coarsest_mag`.
public enum DownsamplePlan {
    /// The default coarsest mag: the smallest power of two, at least 4, at which the larger of
    /// the box's x and y sizes is at most 100 voxels (webknossos: about 100² voxels a slice).
    public static func defaultCoarsest(boundingBoxSize size: Vec3) -> Mag {
        let largest = max(size.x, size.y)
        var p = 4
        while p * 100 < largest && p < Mag.largestFactor { p *= 2 }
        return Mag(p, p, p)
    }

    /// The mags built from `from` up to `coarsest`, each from the one before.
    /// - Parameters:
    ///   - alignWith: every mag of every layer of the dataset: a mag twice as coarse (by its
    ///     largest factor) as the current one is taken as the next step, so that the layers of
    ///     a dataset share their mags.
    ///   - voxelSize: for anisotropic steps; nil for isotropic and constant-z ones.
    /// - Throws: `DatasetError` when `coarsest` cannot be reached or two steps would share their
    ///   largest factor.
    public static func mags(from: Mag, coarsest: Mag, alignWith: [Mag], voxelSize: [Double]?) throws -> [Mag] {
        let f = from.factors, c = coarsest.factors
        guard f.x <= c.x && f.y <= c.y && f.z <= c.z else {
            throw DatasetError(.invalidArgument, "coarsest mag \(coarsest)", "is finer than mag \(from) along some axis")
        }
        var byLargest: [Int: Mag] = [:]
        for mag in alignWith {
            if let other = byLargest[mag.maxFactor], other != mag {
                throw DatasetError(.invalidArgument, "mags \(other) and \(mag)",
                    "layers of the dataset use different mags of the same largest factor; webknossos refuses to downsample such a dataset")
            }
            byLargest[mag.maxFactor] = mag
        }
        var result: [Mag] = []
        var current = from
        while current.maxFactor < coarsest.maxFactor {
            if let aligned = byLargest[current.maxFactor * 2] {
                current = aligned
            } else if let voxelSize {
                let size = [Double(current.factors.x) * voxelSize[0], Double(current.factors.y) * voxelSize[1], Double(current.factors.z) * voxelSize[2]]
                let smallest = size.min()!
                let step = size.map { $0 == smallest ? 2 : 1 }
                let doubled = size.map { $0 * 2 }
                let stepped = zip(size, step).map { $0 * Double($1) }
                let next: Mag
                if doubled.max()! / doubled.min()! < stepped.max()! / stepped.min()! {
                    next = current.times(Vec3(2, 2, 2), atMost: coarsest)
                } else {
                    next = current.times(Vec3(step[0], step[1], step[2]), atMost: coarsest)
                    // Isotropic voxels, anisotropic mag (4-4-2 -> 4-4-4): not a step of its own.
                    if next.maxFactor == current.maxFactor && next != current {
                        current = next
                        continue
                    }
                }
                guard next != current else {
                    throw DatasetError(.invalidArgument, "coarsest mag \(coarsest)", "cannot be reached from mag \(current) with voxel size \(voxelSize)")
                }
                current = next
            } else {
                current = current.times(Vec3(2, 2, 2), atMost: coarsest)
            }
            result.append(current)
        }
        for (source, target) in zip([from] + result.dropLast(), result) {
            let s = source.factors, t = target.factors
            guard t.x >= s.x && t.y >= s.y && t.z >= s.z && t.x % s.x == 0 && t.y % s.y == 0 && t.z % s.z == 0 else {
                throw DatasetError(.invalidArgument, "mag \(target)",
                    "a step from mag \(source) to mag \(target) (a mag of the dataset's other layers) is not a whole factor along every axis; start from or stop at another mag")
            }
        }
        var seen: Set<Int> = [from.maxFactor]
        for mag in result where !seen.insert(mag.maxFactor).inserted {
            throw DatasetError(.invalidArgument, "mag \(mag)", "two steps of the downsampling would share their largest factor")
        }
        return result
    }
}

extension Mag {
    /// The largest of the three factors (webknossos orders mags by it).
    public var maxFactor: Int { Swift.max(factors.x, factors.y, factors.z) }

    /// Each factor times `step`, but not beyond `limit`'s.
    func times(_ step: Vec3, atMost limit: Mag) -> Mag {
        Mag(Swift.min(factors.x * step.x, limit.factors.x), Swift.min(factors.y * step.y, limit.factors.y), Swift.min(factors.z * step.z, limit.factors.z))
    }
}
