/// Writing a whole data file one layer of blocks at a time, for files too large to hold decoded
/// (a 1024³ file of 3 × uint64 is 24 GiB).
extension MagDirectory {
    /// Writes data file `index` whole. `voxels` gives the voxels (C order) of each layer of blocks
    /// in turn: boxes of F × F × B voxels from the file's first z to its last. Encoded blocks wait
    /// in a temporary file (raw blocks go straight to their places) until the file is complete.
    /// - Returns: false when every voxel was zero and nothing was written.
    @discardableResult
    public func writeFileBySlabs(_ index: Vec3, voxels: (Box) throws -> [UInt8]) throws -> Bool {
        let h = header
        let b = h.blockLength
        let perEdge = h.fileLength
        let fileBox = fileBox(index)
        let compressed = h.blockType.isCompressed
        let raw = compressed ? nil : try PendingRawFile(mag: self, index: index)
        // Encoded blocks all wait in the spill file (a limit of 0 keeps none in memory).
        let stash = EncodedBlocks(directory: path, memoryLimit: 0)
        var anyData = false
        do {
            for bz in 0..<perEdge {
                let slab = Box(
                    offset: fileBox.offset + Vec3(0, 0, bz * b), size: Vec3(h.fileEdge, h.fileEdge, b))
                let data = try voxels(slab)
                precondition(data.count == slab.voxelCount * h.voxelSize, "a slab has F × F × B voxels")
                guard data.contains(where: { $0 != 0 }) else { continue }
                anyData = true
                let encoded: [(number: Int, bytes: [UInt8])] = try data.withUnsafeBytes { source in
                    let address = SendableConstAddress(source.baseAddress!)
                    return try Parallel.map(perEdge * perEdge) { i in
                        let position = Vec3(i % perEdge, i / perEdge, bz)
                        let blockBox = Box(offset: fileBox.offset + position * b, size: Vec3(repeating: b))
                        var block = [UInt8](repeating: 0, count: h.blockByteCount)
                        block.withUnsafeMutableBytes { target in
                            RegionCopy.copy(
                                blockBox, voxelSize: h.voxelSize, from: address.pointer, layout: slab,
                                to: target.baseAddress!, layout: blockBox)
                        }
                        let number = Morton.encode(position)
                        if let raw {
                            try raw.writeBlock(number, block)
                            return (number, [])
                        }
                        return (number, self.encodeBlock(block))
                    }
                }
                if compressed {
                    for (number, bytes) in encoded { try stash.put(index, number, bytes) }
                }
            }
            guard anyData else {
                raw?.abandon()
                return false
            }
            if let raw {
                try raw.finish { _ in nil }
            } else {
                let blocks = try stash.takeFile(index)
                try replaceFile(index) { n in
                    guard let bytes = try blocks.bytes(n) else { return .zero }
                    return .encoded(bytes)
                }
            }
        } catch {
            raw?.abandon()
            throw error
        }
        return true
    }
}
