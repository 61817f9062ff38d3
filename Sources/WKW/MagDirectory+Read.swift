/// Region reads: each needed block is decoded once, blocks in parallel across cores.
extension MagDirectory {
    /// Bytes staged for decoding at most at once; bounds memory for very large regions.
    static let stagingLimit = 256 << 20

    /// Reads a region into a new buffer. Voxels never written read as zero.
    public func read(_ box: Box) throws -> [UInt8] {
        guard let count = box.byteCount(voxelSize: header.voxelSize) else {
            throw WKWError(.invalidArgument, path: path, "region \(box) is too large")
        }
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(box, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// Reads a region into `destination`, which must hold exactly the region's bytes.
    /// - Throws: `WKWError` naming the data file when one is corrupt; nothing is returned as zeros
    ///   that is present but unreadable.
    public func read(_ box: Box, into destination: UnsafeMutableRawBufferPointer) throws {
        try checkRegion(box, byteCount: destination.count)
        guard !box.isEmpty, let base = destination.baseAddress else { return }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: destination.count)

        var batch = ReadBatch()
        for index in box.cellRange(Vec3(repeating: header.fileEdge)).positions {
            let blocks = blocks(ofFile: index, meeting: box)
            guard !blocks.isEmpty, let file = try OpenFile.openIfExists(filePath(index)) else { continue }
            let layout = try DataFileLayout.read(file, magHeader: header)
            let boxes = Dictionary(uniqueKeysWithValues: blocks.map { ($0.number, $0.box) })
            // Blocks stored together are read together; a z-layer of blocks is spread over the
            // whole file (Morton order), so one span would read far more than needed.
            let runs = layout.runs(blocks.map(\.number))
            var next = 0
            while next < runs.count {
                // As many runs as the staging limit allows, read in parallel.
                var end = next
                var bytes = 0
                while end < runs.count && (end == next || batch.stagedBytes + bytes + runs[end].range.count <= Self.stagingLimit) {
                    bytes += runs[end].range.count
                    end += 1
                }
                if batch.stagedBytes + bytes > Self.stagingLimit && !batch.tasks.isEmpty {
                    try decode(batch, region: box, into: base)
                    batch = ReadBatch()
                }
                let chunk = Array(runs[next..<end])
                let stored = try Parallel.map(chunk.count) { k in
                    try file.read(at: chunk[k].range.lowerBound, count: chunk[k].range.count)
                }
                for (run, bytes) in zip(chunk, stored) {
                    let stage = batch.stages.count
                    batch.stages.append(bytes)
                    batch.layouts.append(layout)
                    batch.stagedBytes += run.range.count
                    for number in run.blocks {
                        let range = layout.range(ofBlock: number)
                        batch.tasks.append(
                            .init(
                                stage: stage, block: number, box: boxes[number]!,
                                bytes: (range.lowerBound - run.range.lowerBound)..<(range.upperBound - run.range.lowerBound)))
                    }
                }
                next = end
            }
        }
        try decode(batch, region: box, into: base)
    }

    private func decode(_ batch: ReadBatch, region: Box, into base: UnsafeMutableRawPointer) throws {
        let voxelSize = header.voxelSize
        let blockBytes = header.blockByteCount
        let compressed = header.blockType.isCompressed
        // Tasks write disjoint parts of the destination, so they need no lock.
        let destination = SendableAddress(base)
        try Parallel.forEach(batch.tasks.count) { t in
            let task = batch.tasks[t]
            let part = task.box.intersection(region)!
            try batch.stages[task.stage].withUnsafeBytes { stage in
                let stored = UnsafeRawBufferPointer(rebasing: stage[task.bytes])
                if !compressed {
                    RegionCopy.copy(
                        part, voxelSize: voxelSize, from: stored.baseAddress!, layout: task.box,
                        to: destination.pointer, layout: region)
                    return
                }
                let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: blockBytes, alignment: 16)
                defer { scratch.deallocate() }
                try batch.layouts[task.stage].decode(block: task.block, stored: stored, into: scratch)
                RegionCopy.copy(
                    part, voxelSize: voxelSize, from: scratch.baseAddress!, layout: task.box,
                    to: destination.pointer, layout: region)
            }
        }
    }
}

/// Stored bytes of some data files and the blocks to decode from them.
private struct ReadBatch {
    struct Task {
        var stage: Int
        var block: Int
        var box: Box
        var bytes: Range<Int>
    }
    var stages: [[UInt8]] = []
    var layouts: [DataFileLayout] = []
    var tasks: [Task] = []
    var stagedBytes = 0
}

/// A raw address handed to parallel workers that each touch a disjoint part of it.
struct SendableAddress: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}
