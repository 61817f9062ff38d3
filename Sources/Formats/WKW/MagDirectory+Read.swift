#if canImport(Glibc)
    import Glibc
#endif

/// Region reads: each needed block is decoded once, blocks in parallel across cores.
extension MagDirectory {
    /// Stored bytes the kernel is asked to fetch ahead of the decoders (one window at a time).
    static let prefetchWindow = 64 << 20
    /// Longest read: a run read and decoded at once stays in the processor's cache.
    static let runLimit = 1 << 20

    /// Reads a region into a new buffer. Voxels never written read as zero.
    public func read(_ box: Box) throws -> [UInt8] {
        guard let count = box.byteCount(voxelSize: header.voxelSize) else {
            throw FormatError(.invalidArgument, path: path, "region \(box) is too large")
        }
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(box, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// How often a read starts again when a writer changed one of its data files meanwhile.
    static let readAttempts = 20

    /// Reads a region into `destination`, which must hold exactly the region's bytes: each data
    /// file as one version, never a mix of an old and a new one. A read that meets a file being
    /// replaced starts again (a few times; a file rewritten without pause beyond that is an error).
    /// - Throws: `FormatError` naming the data file when one is corrupt; nothing is returned as zeros
    ///   that is present but unreadable.
    public func read(_ box: Box, into destination: UnsafeMutableRawBufferPointer) throws {
        try checkRegion(box, byteCount: destination.count)
        guard !box.isEmpty, destination.baseAddress != nil else { return }
        for attempt in 1...Self.readAttempts {
            do {
                return try readOnce(box, into: destination)
            } catch let error as FormatError where error.kind == .changed && attempt < Self.readAttempts {
                usleep(UInt32(1000 * attempt))  // let the writer finish
            }
        }
    }

    private func readOnce(_ box: Box, into destination: UnsafeMutableRawBufferPointer) throws {
        let base = destination.baseAddress!
        // Raw files are patched in place: a shared lock of the files keeps a running patch out
        // while they are read (best effort: a file system without locks reads unlocked). A journal
        // found under it is a dead writer's: rolled back, and the read starts again.
        var sharedLock: FileLock?
        if !header.blockType.isCompressed {
            let files = box.cellRange(Vec3(repeating: header.fileEdge)).positions
            sharedLock = try? FileLock.lock(lockFilePath, ranges: Self.lockRanges(files), exclusive: false)
            if let file = files.first(where: { PathOps.exists(journalPath($0)) }) {
                sharedLock?.unlock()
                try rollBackInterruptedWrites(files)
                throw FormatError(.changed, path: filePath(file), "an interrupted write was found during the read")
            }
        }
        defer { sharedLock?.unlock() }

        let (runs, missing) = try plan(box)
        for part in missing { RegionCopy.zero(part, voxelSize: header.voxelSize, in: base, layout: box) }

        let windows = Self.windows(runs)
        let destination = SendableAddress(base)
        let all = runs
        var files = windows.isEmpty ? [:] : try openFiles(all[windows[0]])
        for (w, window) in windows.enumerated() {
            let next = w + 1 < windows.count ? try openFiles(all[windows[w + 1]]) : [:]
            let open = files
            try Parallel.forEach(window.count) { i in
                let run = all[window.lowerBound + i]
                try self.load(run, from: open[run.path]!, region: box, into: destination)
            }
            // A file changed while its runs were read may have given a mix of versions.
            for run in all[window] where try open[run.path]!.identity() != run.identity {
                throw FormatError(.changed, path: run.path, "the data file changed during the read")
            }
            files = next
        }
    }

    /// Data files open at once while a region is read (two windows' worth at most).
    static let windowFiles = 64

    /// Windows of runs: the kernel fetches the next window from disk while this one is read and
    /// decoded, each run by one worker straight after its read (its bytes still in cache). A
    /// window also has at most `windowFiles` data files, which stay open only for it, so regions
    /// of thousands of small files never run out of file descriptors.
    private static func windows(_ runs: [StoredRun]) -> [Range<Int>] {
        var windows: [Range<Int>] = []
        var first = 0
        var bytes = 0
        var paths = Set<String>()
        for (i, run) in runs.enumerated() {
            let newFile = !paths.contains(run.path)
            if i > first && (bytes + run.range.count > prefetchWindow || (newFile && paths.count == windowFiles)) {
                windows.append(first..<i)
                (first, bytes, paths) = (i, 0, [])
            }
            bytes += run.range.count
            paths.insert(run.path)
        }
        if first < runs.count { windows.append(first..<runs.count) }
        return windows
    }

    /// Opens the data files of `runs` and asks the kernel to start fetching the runs. A file
    /// replaced or changed since the read was planned is an error (its layout is not the one
    /// planned), never a silent mix of versions.
    private func openFiles(_ runs: ArraySlice<StoredRun>) throws -> [String: OpenFile] {
        var files: [String: OpenFile] = [:]
        for run in runs {
            if files[run.path] == nil {
                guard let file = try OpenFile.openIfExists(run.path), try file.identity() == run.identity else {
                    throw FormatError(.changed, path: run.path, "the data file changed during the read")
                }
                files[run.path] = file
            }
            files[run.path]!.willNeed(run.range)
        }
        return files
    }

    /// Asks the kernel to start fetching the first stored bytes of `box` (advice only), so a
    /// caller reading a large region slab by slab keeps the disk busy across slabs.
    public func prefetch(_ box: Box) throws {
        let runs = try plan(box).runs
        if let first = Self.windows(runs).first { _ = try openFiles(runs[first]) }
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
            let identity = try file.identity()
            let boxes = Dictionary(uniqueKeysWithValues: blocks.map { ($0.number, $0.box) })
            // Blocks stored together are read together; a z-layer of blocks is spread over the
            // whole file (Morton order), so one span would read far more than needed.
            for run in layout.runs(blocks.map(\.number), maxLength: Self.runLimit) {
                runs.append(
                    StoredRun(
                        path: file.path, identity: identity, layout: layout, range: run.range, blocks: run.blocks.map { ($0, boxes[$0]!) }))
            }
        }
        return (runs, missing)
    }

    /// Reads one run and puts its blocks' voxels into the region.
    private func load(_ run: StoredRun, from file: OpenFile, region: Box, into destination: SendableAddress) throws {
        let voxelSize = header.voxelSize
        let stored = UnsafeMutableRawBufferPointer.allocate(byteCount: run.range.count, alignment: 16)
        defer { stored.deallocate() }
        try file.read(at: run.range.lowerBound, into: stored)
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
    /// The data file, and its inode, size and modification time when the read was planned.
    var path: String
    var identity: [Int64]
    var layout: DataFileLayout
    var range: Range<Int>
    var blocks: [(number: Int, box: Box)]
}

/// A raw address handed to parallel workers that each touch a disjoint part of it.
struct SendableAddress: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}
