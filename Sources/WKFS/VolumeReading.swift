import Formats

/// Reads of whole-volume files (`volume.raw`, slice images): any region of a mag, across its
/// data files, through the shared block cache.
extension BlockCache {
    /// Writes the voxels of `box` (mag voxels) in C order to `destination`; never-written voxels
    /// are zeros.
    func readRegion(_ mag: any MagStore, _ box: Box, into destination: UnsafeMutableRawPointer) throws {
        let files = box.cellRange(mag.fileShape).positions
        for index in files {
            let fileBox = Box(offset: index * mag.fileShape, size: mag.fileShape)
            guard let part = fileBox.intersection(box) else { continue }
            let local = Box(offset: part.offset - fileBox.offset, size: part.size)
            let file = try current(mag, index)
            if part == box {
                return try readBox(mag, index, local, from: file, into: destination)
            }
            let bytes = part.voxelCount * mag.voxelBytes
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes, alignment: 16)
            defer { buffer.deallocate() }
            try readBox(mag, index, local, from: file, into: buffer.baseAddress!)
            RegionCopy.copy(part, voxelSize: mag.voxelBytes, from: buffer.baseAddress!, layout: part, to: destination, layout: box)
        }
    }

    /// Fills `destination` with the bytes of the volume `volume` (mag voxels, C order z, y, x, c)
    /// from `offset` on; returns how many (short at the end).
    func readVolume(_ mag: any MagStore, _ volume: Box, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        let rowBytes = volume.size.x * mag.voxelBytes
        let total = volume.voxelCount * mag.voxelBytes
        let end = min(total, offset + destination.count)
        guard offset < end, rowBytes > 0, let base = destination.baseAddress else { return 0 }
        // Whole rows are read, plane by plane, then the asked bytes copied out of them.
        var row = offset / rowBytes
        let lastRow = (end - 1) / rowBytes
        while row <= lastRow {
            let z = row / volume.size.y, y = row % volume.size.y
            let rows = min(volume.size.y - y, lastRow - row + 1)
            let region = Box(offset: volume.offset + Vec3(0, y, z), size: Vec3(volume.size.x, rows, 1))
            let start = row * rowBytes, stop = (row + rows) * rowBytes
            let from = max(offset, start), to = min(end, stop)
            if from == start && to == stop {
                try readRegion(mag, region, into: base + (from - offset))
            } else {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: stop - start, alignment: 16)
                defer { buffer.deallocate() }
                try readRegion(mag, region, into: buffer.baseAddress!)
                (base + (from - offset)).copyMemory(from: buffer.baseAddress! + (from - start), byteCount: to - from)
            }
            row += rows
        }
        return end - offset
    }
}
