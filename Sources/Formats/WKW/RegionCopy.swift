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
        guard !box.isEmpty else { return }
        let rowBytes = box.size.x * voxelSize
        let sourceRow = sourceBox.size.x * voxelSize
        let destinationRow = destinationBox.size.x * voxelSize
        var fromPlane = source + rowStart(box.offset.x, box.offset.y, box.offset.z, in: sourceBox) * voxelSize
        var toPlane = destination + rowStart(box.offset.x, box.offset.y, box.offset.z, in: destinationBox) * voxelSize
        // Whole rows on both sides: a plane is one piece.
        let rows = rowBytes == sourceRow && rowBytes == destinationRow ? 1 : box.size.y
        let pieceBytes = rows == 1 ? rowBytes * box.size.y : rowBytes
        for _ in 0..<box.size.z {
            var from = fromPlane
            var to = toPlane
            // Rows of 8-voxel blocks are 8, 16 or 32 bytes: a call to memmove per row would cost
            // more than the copy, so those get their own loops.
            switch pieceBytes {
            case 8:
                for _ in 0..<rows {
                    to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
                    from += sourceRow
                    to += destinationRow
                }
            case 16:
                for _ in 0..<rows {
                    to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
                    to.storeBytes(of: from.loadUnaligned(fromByteOffset: 8, as: UInt64.self), toByteOffset: 8, as: UInt64.self)
                    from += sourceRow
                    to += destinationRow
                }
            case 32:
                for _ in 0..<rows {
                    for word in stride(from: 0, to: 32, by: 8) {
                        to.storeBytes(of: from.loadUnaligned(fromByteOffset: word, as: UInt64.self), toByteOffset: word, as: UInt64.self)
                    }
                    from += sourceRow
                    to += destinationRow
                }
            default:
                for _ in 0..<rows {
                    to.copyMemory(from: from, byteCount: pieceBytes)
                    from += sourceRow
                    to += destinationRow
                }
            }
            fromPlane += sourceRow * sourceBox.size.y
            toPlane += destinationRow * destinationBox.size.y
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

    /// True when every voxel of `box` in `source` (laid out as `sourceBox`) is zero.
    public static func isZero(_ box: Box, voxelSize: Int, in source: UnsafeRawPointer, layout sourceBox: Box) -> Bool {
        let rowBytes = box.size.x * voxelSize
        for z in box.offset.z..<box.end.z {
            for y in box.offset.y..<box.end.y {
                let row = source + rowStart(box.offset.x, y, z, in: sourceBox) * voxelSize
                if !isZero(UnsafeRawBufferPointer(start: row, count: rowBytes)) { return false }
            }
        }
        return true
    }

    /// True when every byte is zero (stops at the first one that is not).
    public static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let words = bytes.count / 8
        var i = 0
        while i < words {
            if bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
            i += 1
        }
        return bytes[(words * 8)...].allSatisfy { $0 == 0 }
    }

    /// The voxel index of (x, y, z) in a buffer laid out as `layout` (C order).
    @inline(__always)
    private static func rowStart(_ x: Int, _ y: Int, _ z: Int, in layout: Box) -> Int {
        ((z - layout.offset.z) * layout.size.y + (y - layout.offset.y)) * layout.size.x + (x - layout.offset.x)
    }
}
