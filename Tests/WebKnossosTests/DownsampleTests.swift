import Formats
import Testing
@testable import WebKnossos

/// The parts of downsampling that numbers alone decide: webknossos's mag steps and its
/// reductions of one block (the voxels against webknossos itself are in Tests/compat).
@Suite struct DownsampleTests {
    /// One 2×2×2 block of float32 values in webknossos's order (y fastest, then x, then z),
    /// laid out as the source region (z, y, x).
    func reduce(_ ordered: [Float], _ interpolation: Interpolation) throws -> Float {
        var region = [Float](repeating: 0, count: 8)
        var i = 0
        for dz in 0..<2 {
            for dx in 0..<2 {
                for dy in 0..<2 {
                    region[dz * 4 + dy * 2 + dx] = ordered[i]
                    i += 1
                }
            }
        }
        let kernel = DownsampleKernel(voxelType: .float32, channels: 1, factor: Vec3(2, 2, 2), interpolation: interpolation)
        var out: Float = -1
        try region.withUnsafeBytes { source in
            try withUnsafeMutableBytes(of: &out) { try kernel.reduce(source.baseAddress!, target: Vec3(1, 1, 1), into: $0.baseAddress!, nearest: nil) }
        }
        return out
    }

    @Test func modeCountsANaNOnceAndTiesGoToTheFirst() throws {
        // webknossos: a NaN counts itself (1); a later value needs 2 to win.
        #expect(try reduce([.nan, 1, 2, 3, 4, 5, 6, 7], .mode).isNaN)
        #expect(try reduce([.nan, 1, 2, 2, 4, 5, 6, 7], .mode) == 2)
        // A tie: the value met first wins.
        #expect(try reduce([3, 1, 1, 3, 4, 5, 6, 7], .mode) == 3)
        #expect(try reduce([9, 1, 1, 3, 3, 5, 6, 7], .mode) == 1)
    }

    @Test func medianOfFloatsWithANaNIsNaN() throws {
        #expect(try reduce([1, 2, 3, .nan, 5, 6, 7, 8], .median).isNaN)
        #expect(try reduce([1, 2, 3, 4, 5, 6, 7, 8], .median) == 4.5)
    }

    @Test func anisotropicStepsFollowTheVoxelSize() throws {
        let mags = try DownsamplePlan.mags(from: Mag(1, 1, 1), coarsest: Mag(8, 8, 8), alignWith: [Mag(1, 1, 1)], voxelSize: [11.24, 11.24, 28])
        #expect(mags == [Mag(2, 2, 1), Mag(4, 4, 2), Mag(8, 8, 4)])
        #expect(DownsamplePlan.defaultCoarsest(boundingBoxSize: Vec3(401, 100, 100)) == Mag(8, 8, 8))
        #expect(DownsamplePlan.defaultCoarsest(boundingBoxSize: Vec3(400, 100, 100)) == Mag(4, 4, 4))
    }

    @Test func aStepThatIsNoWholeFactorIsRefused() throws {
        // Another layer's 4-4-1 after 2: z would go from 2 to 1.
        #expect(throws: DatasetError.self) {
            try DownsamplePlan.mags(from: Mag(2, 2, 2), coarsest: Mag(8, 8, 8), alignWith: [Mag(1, 1, 1), Mag(2, 2, 2), Mag(4, 4, 1)], voxelSize: nil)
        }
    }
}
