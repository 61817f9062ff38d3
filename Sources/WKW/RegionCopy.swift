/// Copies voxels between buffers that each hold a box of voxels in C order (z, y, x, channel).
public enum RegionCopy {
    /// Copies the voxels of `box` from `source` (laid out as `sourceBox`) to `destination`
    /// (laid out as `destinationBox`). `box` must lie inside both.
    @inline(__always)
    public static func copy(
        _ box: Box, voxelSize: Int,
        from source: UnsafeRawPointer, layout sourceBox: Box,
        to destination: UnsafeMutableRawPointer, layout destinationBox: Box
    ) {
        let rowBytes = box.size.x * voxelSize
        for z in box.offset.z..<box.end.z {
            for y in box.offset.y..<box.end.y {
                let from = source + rowStart(box.offset.x, y, z, in: sourceBox) * voxelSize
                let to = destination + rowStart(box.offset.x, y, z, in: destinationBox) * voxelSize
                // Rows of 8-voxel blocks are 8 or 16 bytes: a call to memmove per row would cost
                // more than the copy.
                if rowBytes == 8 {
                    to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
                } else if rowBytes == 16 {
                    to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
                    to.storeBytes(of: from.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
                } else {
                    to.copyMemory(from: from, byteCount: rowBytes)
                }
            }
        }
    }

    /// Sets the voxels of `box` in `destination` (laid out as `destinationBox`) to zero.
    public static func zero(_ box: Box, voxelSize: Int, in destination: UnsafeMutableRawPointer, layout destinationBox: Box) {
        let rowBytes = box.size.x * voxelSize
        for z in box.offset.z..<box.end.z {
            for y in box.offset.y..<box.end.y {
                (destination + rowStart(box.offset.x, y, z, in: destinationBox) * voxelSize).initializeMemory(as: UInt8.self, repeating: 0, count: rowBytes)
            }
        }
    }

    /// The voxel index of (x, y, z) in a buffer laid out as `layout` (C order).
    @inline(__always)
    private static func rowStart(_ x: Int, _ y: Int, _ z: Int, in layout: Box) -> Int {
        ((z - layout.offset.z) * layout.size.y + (y - layout.offset.y)) * layout.size.x + (x - layout.offset.x)
    }
}
