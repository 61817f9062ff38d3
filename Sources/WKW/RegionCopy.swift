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
        let s = sourceBox.size
        let d = destinationBox.size
        for z in box.offset.z..<box.end.z {
            for y in box.offset.y..<box.end.y {
                let sourceIndex =
                    ((z - sourceBox.offset.z) * s.y + (y - sourceBox.offset.y)) * s.x + (box.offset.x - sourceBox.offset.x)
                let destinationIndex =
                    ((z - destinationBox.offset.z) * d.y + (y - destinationBox.offset.y)) * d.x
                    + (box.offset.x - destinationBox.offset.x)
                let from = source + sourceIndex * voxelSize
                let to = destination + destinationIndex * voxelSize
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
        let d = destinationBox.size
        for z in box.offset.z..<box.end.z {
            for y in box.offset.y..<box.end.y {
                let index =
                    ((z - destinationBox.offset.z) * d.y + (y - destinationBox.offset.y)) * d.x
                    + (box.offset.x - destinationBox.offset.x)
                (destination + index * voxelSize).initializeMemory(as: UInt8.self, repeating: 0, count: rowBytes)
            }
        }
    }
}
