import Formats

/// Reads of raw cubes: decoded blocks come from the shared cache and are copied row by row.
extension BlockCache {
    /// Fills `destination` with cube bytes from `offset` on; returns how many bytes (short at the end).
    /// `file`: the version of the cube's data file to read (nil: none, zeros).
    func readCube(_ mag: any MagStore, _ index: Vec3, from file: OpenedFile?, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        try CubeReading(mag: mag, blocks: { try self.blocks(mag, index, $0, from: file) }, prefetch: { self.prefetch(mag, $0, from: file) })
            .readCube(offset: offset, into: destination)
    }

    /// Writes the voxels of `box` (cube-local) of data file `index` in C order to `destination`.
    func readBox(_ mag: any MagStore, _ index: Vec3, _ box: Box, from file: OpenedFile?, into destination: UnsafeMutableRawPointer) throws {
        try CubeReading(mag: mag, blocks: { try self.blocks(mag, index, $0, from: file) }, prefetch: { self.prefetch(mag, $0, from: file) })
            .readBox(box, into: destination)
    }
}

/// Cube bytes copied row by row out of decoded blocks, wherever the blocks come from: the
/// shared cache, or the pending blocks of a cube being rewritten.
struct CubeReading {
    let mag: any MagStore
    /// Decoded blocks by number, in that order.
    let blocks: ([Int]) throws -> [CachedBlock]
    /// Asks for blocks to be read ahead; false when none was missing.
    let prefetch: ([Int]) -> Bool

    /// Fills `destination` with cube bytes from `offset` on; returns how many bytes (short at the end).
    func readCube(offset: Int, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        let geometry = CubeGeometry(mag)
        let end = min(geometry.cubeBytes, offset + destination.count)
        guard offset < end, let base = destination.baseAddress else { return 0 }
        let (start, boxes) = geometry.rowBoxes(offset..<end)
        let rowAligned = start == offset && (end - start) % geometry.rowBytes == 0
        if rowAligned {
            var position = 0
            for box in boxes {
                try readBox(box, into: base + position)
                position += box.voxelCount * geometry.voxelSize
            }
        } else {
            let total = boxes.reduce(0) { $0 + $1.voxelCount } * geometry.voxelSize
            let rows = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 16)
            defer { rows.deallocate() }
            var position = 0
            for box in boxes {
                try readBox(box, into: rows.baseAddress! + position)
                position += box.voxelCount * geometry.voxelSize
            }
            base.copyMemory(from: rows.baseAddress! + (offset - start), byteCount: end - offset)
        }
        return end - offset
    }

    /// Writes the voxels of `box` (cube-local) in C order to `destination`.
    /// Blocks are fetched a group at a time, so a request holds a few MiB of decoded blocks, not a
    /// whole layer (readahead keeps several requests in flight; each would pin its layer).
    func readBox(_ box: Box, into destination: UnsafeMutableRawPointer) throws {
        let b = mag.blockShape
        let positions = box.cellRange(b).positions
        let group = max(1, (4 << 20) / mag.blockBytes)
        let numbers = positions.map(mag.blockNumber)
        if positions.count > group, prefetch(numbers) {
            // A box that starts a layer of blocks (the first plane a program reads of it) also
            // asks for the next layer, so the disk reads it while the planes of this one are
            // served: the next layer that the groups decoded now do not hold (a Zarr3 group of
            // two chunks holds two layers).
            let size = BlockCache.groupSize(mag)
            let decoding = Set(numbers.map { $0 / size })
            let cube = mag.fileShape
            var z = (box.offset.z / b.z + 1) * b.z
            while z < cube.z {
                let layer = Box(offset: Vec3(box.offset.x, box.offset.y, z), size: Vec3(box.size.x, box.size.y, min(b.z, cube.z - z)))
                let next = layer.cellRange(b).positions.map(mag.blockNumber)
                if !next.contains(where: { decoding.contains($0 / size) }) {
                    _ = prefetch(next)
                    break
                }
                z += b.z
            }
        }
        // Zero blocks are not copied: when one comes before any block with data, the whole
        // destination is cleared at once (one memset instead of a copy per row) and later blocks
        // with data overwrite their part; after one with data, a zero block clears its own part.
        var cleared = false
        var copied = false
        var start = 0
        while start < positions.count {
            let slice = positions[start..<min(positions.count, start + group)]
            let blocks = try self.blocks(Array(numbers[start..<(start + slice.count)]))
            for (position, block) in zip(slice, blocks) {
                let blockBox = Box(offset: position * b, size: b)
                let part = blockBox.intersection(box)!
                if block.isZero {
                    if copied {
                        if !cleared { RegionCopy.zero(part, voxelSize: mag.voxelBytes, in: destination, layout: box) }
                    } else if !cleared {
                        destination.initializeMemory(as: UInt8.self, repeating: 0, count: box.voxelCount * mag.voxelBytes)
                        cleared = true
                    }
                    continue
                }
                copied = true
                block.withUnsafeBytes { bytes in
                    RegionCopy.copy(
                        part, voxelSize: mag.voxelBytes, from: bytes.baseAddress!, layout: blockBox,
                        to: destination, layout: box)
                }
            }
            start += group
        }
    }
}
