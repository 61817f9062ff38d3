/// Region reads: each needed block is decoded once, blocks in parallel across cores.
extension MagDirectory {
    /// Stored bytes the kernel is asked to fetch ahead of the decoders (one window at a time).
    static let prefetchWindow = 64 << 20
    /// Longest read: a run read and decoded at once stays in the processor's cache.
    static let runLimit = 1 << 20

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

        let (runs, missing) = try plan(box)
        for part in missing { RegionCopy.zero(part, voxelSize: header.voxelSize, in: base, layout: box) }

        // Windows of runs: the kernel fetches the next window from disk while this one is read
        // and decoded, each run by one worker straight after its read (its bytes still in cache).
        var windows: [Range<Int>] = []
        var first = 0
        var bytes = 0
        for (i, run) in runs.enumerated() {
            if bytes + run.range.count > Self.prefetchWindow && i > first {
                windows.append(first..<i)
                (first, bytes) = (i, 0)
            }
            bytes += run.range.count
        }
        if first < runs.count { windows.append(first..<runs.count) }
        let destination = SendableAddress(base)
        let all = runs
        for (w, window) in windows.enumerated() {
            if w == 0 { prefetch(all[window]) }
            if w + 1 < windows.count { prefetch(all[windows[w + 1]]) }
            try Parallel.forEach(window.count) { i in
                try self.load(all[window.lowerBound + i], region: box, into: destination)
            }
        }
    }

    /// Asks the kernel to start fetching the first stored bytes of `box` (advice only), so a
    /// caller reading a large region slab by slab keeps the disk busy across slabs.
    public func prefetch(_ box: Box) throws {
        let runs = try plan(box).runs
        var bytes = 0
        let end = runs.firstIndex { run in
            bytes += run.range.count
            return bytes > Self.prefetchWindow
        } ?? runs.count
        prefetch(runs[0..<end])
    }

    /// The stored runs to read for `box`, and the parts of `box` whose data files are missing.
    /// Every block of an existing data file is stored (raw files have a fixed size, compressed
    /// ones a full jump table), so only the parts of missing files need zeros.
    private func plan(_ box: Box) throws -> (runs: [StoredRun], missing: [Box]) {
        var runs: [StoredRun] = []
        var missing: [Box] = []
        for index in box.cellRange(Vec3(repeating: header.fileEdge)).positions {
            let blocks = blocks(ofFile: index, meeting: box)
            guard !blocks.isEmpty else { continue }
            guard let file = try OpenFile.openIfExists(filePath(index)) else {
                let fileBox = Box(offset: index * Vec3(repeating: header.fileEdge), size: Vec3(repeating: header.fileEdge))
                missing.append(fileBox.intersection(box)!)
                continue
            }
            let layout = try DataFileLayout.read(file, magHeader: header)
            let boxes = Dictionary(uniqueKeysWithValues: blocks.map { ($0.number, $0.box) })
            // Blocks stored together are read together; a z-layer of blocks is spread over the
            // whole file (Morton order), so one span would read far more than needed.
            for run in layout.runs(blocks.map(\.number), maxLength: Self.runLimit) {
                runs.append(StoredRun(file: file, layout: layout, range: run.range, blocks: run.blocks.map { ($0, boxes[$0]!) }))
            }
        }
        return (runs, missing)
    }

    private func prefetch(_ runs: ArraySlice<StoredRun>) {
        for run in runs { run.file.willNeed(run.range) }
    }

    /// Reads one run and puts its blocks' voxels into the region.
    private func load(_ run: StoredRun, region: Box, into destination: SendableAddress) throws {
        let voxelSize = header.voxelSize
        let stored = UnsafeMutableRawBufferPointer.allocate(byteCount: run.range.count, alignment: 16)
        defer { stored.deallocate() }
        try run.file.read(at: run.range.lowerBound, into: stored)
        let compressed = header.blockType.isCompressed
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: compressed ? header.blockByteCount : 0, alignment: 16)
        defer { scratch.deallocate() }
        for (number, blockBox) in run.blocks {
            let range = run.layout.range(ofBlock: number)
            let bytes = UnsafeRawBufferPointer(rebasing: stored[(range.lowerBound - run.range.lowerBound)..<(range.upperBound - run.range.lowerBound)])
            let part = blockBox.intersection(region)!
            var voxels = bytes.baseAddress!
            if compressed {
                try run.layout.decode(block: number, stored: bytes, into: scratch)
                voxels = UnsafeRawPointer(scratch.baseAddress!)
            }
            RegionCopy.copy(part, voxelSize: voxelSize, from: voxels, layout: blockBox, to: destination.pointer, layout: region)
        }
    }
}

/// Blocks stored next to each other in one data file, read with one call.
private struct StoredRun: Sendable {
    var file: OpenFile
    var layout: DataFileLayout
    var range: Range<Int>
    var blocks: [(number: Int, box: Box)]
}

/// A raw address handed to parallel workers that each touch a disjoint part of it.
struct SendableAddress: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}
