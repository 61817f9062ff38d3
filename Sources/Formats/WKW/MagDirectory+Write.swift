import Synchronization

/// Region writes: raw files are patched block by block; compressed files are rebuilt one layer of
/// blocks at a time into temporary files beside them, and all of those are renamed into place only
/// once every one is ready, so a corrupt file anywhere in the region leaves every file as it was.
extension MagDirectory {
    /// Writes `source` (the region's bytes in C order) into the region `box`; with `files`, only
    /// into the data files it accepts (the others stay as they are, or missing).
    public func write(_ box: Box, from source: UnsafeRawBufferPointer, files: (@Sendable (Vec3) -> Bool)? = nil) throws {
        try checkRegion(box, byteCount: source.count)
        guard !box.isEmpty, let base = source.baseAddress else { return }
        let planeBytes = box.size.x * box.size.y * header.voxelSize
        try write(box, spillAbove: 1 << 30, files: files) { part in base + (part.offset.z - box.offset.z) * planeBytes }
    }

    /// Writes the region `box`, its voxels given slab by slab: `slab(part)` returns the C-order
    /// bytes of `part`, whole z-planes of `box` from the lowest z up, each part once; the bytes
    /// must stay valid until the next call. Parts are one layer of blocks thick (compressed mags)
    /// or about 64 MiB (raw mags), so the caller needs no more memory than one part.
    public func write(_ box: Box, slabs slab: (Box) throws -> UnsafeRawPointer) throws {
        try write(box, spillAbove: 1 << 30, slabs: slab)
    }

    /// `write(_:slabs:)`, holding at most `spillAbove` bytes of encoded blocks of one layer of
    /// compressed files in memory; more wait in a spill file. With `files`, only the data files
    /// it accepts are written.
    func write(
        _ box: Box, spillAbove: Int, files include: (@Sendable (Vec3) -> Bool)? = nil, slabs slab: (Box) throws -> UnsafeRawPointer
    ) throws {
        guard let byteCount = box.byteCount(voxelSize: header.voxelSize) else {
            throw FormatError(.invalidArgument, path: path, "region \(box) is too large")
        }
        try checkRegion(box, byteCount: byteCount)
        guard !box.isEmpty else { return }
        // Check every existing file first: a bad one must stop the write before anything changes.
        try checkFiles(meeting: box)
        if header.blockType.isCompressed {
            // Every file's lock is held from reading its old blocks until its new version is in
            // place: a concurrent writer's change of the same file is merged, never lost.
            let files = box.cellRange(Vec3(repeating: header.fileEdge)).positions.filter { include?($0) ?? true }
            try withFilesLocked(files) {
                try CompressedRegionWrite(mag: self, region: box, memoryLimit: spillAbove, include: include).run(slab)
            }
            return
        }
        // Every file's lock is held for the whole write (as for compressed mags): a file that is
        // new is built across the slabs in its temporary file and put in place once, at the end.
        let allFiles = box.cellRange(Vec3(repeating: header.fileEdge)).positions.filter { include?($0) ?? true }
        try withFilesLocked(allFiles) {
            let new = Set(allFiles.filter { !PathOps.exists(filePath($0)) })
            let temporaries = Mutex<[Vec3: String]>([:])
            // Existing files patched so far, with the number of journal segments each has.
            var patched = RawPatch(writeID: UInt64.random(in: 1...UInt64.max))
            do {
                let planeBytes = box.size.x * box.size.y * header.voxelSize
                let b = header.blockLength
                let thickness = max(1, (64 << 20) / max(1, planeBytes * b)) * b
                var z = box.offset.z
                while z < box.end.z {
                    let next = min(box.end.z, (z / thickness + 1) * thickness)
                    let part = Box(offset: Vec3(box.offset.x, box.offset.y, z), size: Vec3(box.size.x, box.size.y, next - z))
                    let files = part.cellRange(Vec3(repeating: header.fileEdge)).positions.filter { include?($0) ?? true }
                    let job = WriteJob(mag: self, region: part, source: SendableConstAddress(try slab(part)), parallelBlocks: files.count == 1)
                    try fillNewRawFiles(files.filter(new.contains), job: job, temporaries: temporaries)
                    try patchRawFiles(files.filter { !new.contains($0) }, job: job, patch: &patched)
                    z = next
                }
                // The commit point of the patched files: all fsynced, then their journals deleted.
                let files = patched.files
                try Parallel.forEach(files.count) { i in
                    guard let file = try OpenFile.openIfExists(self.filePath(files[i]), writable: true) else {
                        throw FormatError(.notFound, path: self.filePath(files[i]), "data file vanished during the write")
                    }
                    try file.sync()
                }
                try retireJournals(files)
            } catch {
                temporaries.withLock { $0 }.values.forEach(PathOps.remove)
                // Put the old bytes back now rather than at the next open, if the disk lets us.
                for index in patched.files { _ = try? rollBackHoldingLock(index) }
                throw error
            }
            try AtomicFile.putInPlace(temporaries.withLock { $0 }.map { ($0.value, filePath($0.key)) })
        }
    }

    /// The existing raw files one region write patches in place (opened slab by slab: a region
    /// may meet more files than may be open at once), with the number of journal segments each
    /// has so far, and the write's id that its segments carry.
    private struct RawPatch {
        let writeID: UInt64
        var files: [Vec3] = []
        var segments: [Vec3: Int] = [:]

        init(writeID: UInt64) { self.writeID = writeID }
    }

    /// Writes a slab's blocks into new raw data files, each in its temporary file beside the
    /// final one (header, full length, sparse: zeros), made at the first slab that meets it. The
    /// caller puts them all in place at the end (fsynced together, then renamed: about one journal
    /// commit for a layer of thousands of small files). A crash leaves each one missing or complete.
    private func fillNewRawFiles(_ indices: [Vec3], job: WriteJob, temporaries: borrowing Mutex<[Vec3: String]>) throws {
        let header = self.header
        try Parallel.forEach(indices.count) { i in
            let index = indices[i]
            if let temporary = temporaries.withLock({ $0[index] }) {
                guard let file = try OpenFile.openIfExists(temporary, writable: true) else {
                    throw FormatError(.notFound, path: temporary, "temporary file vanished during the write")
                }
                try job.patch(file, index)
                return
            }
            let path = self.filePath(index)
            try PathOps.makeDirectories(PathOps.dirname(path))
            let temporary = try AtomicFile.prepare(path, sync: false) { file in
                try header.encoded(dataOffset: header.dataFileDataOffset).withUnsafeBytes { try file.write(at: 0, $0) }
                try file.resize(to: header.rawFileLength)
                try job.patch(file, index)
            }
            temporaries.withLock { $0[index] = temporary }
        }
    }

    /// Patches one slab into existing raw data files, in place, under undo journal segments (see
    /// `UndoJournal`): the bytes about to be overwritten are saved durably first. The files are
    /// fsynced and the journals deleted once every slab is in (the caller), so a crash at any
    /// moment leaves every file its old content (after the rollback) or its new one. The caller
    /// holds the files' locks.
    private func patchRawFiles(_ indices: [Vec3], job: WriteJob, patch: inout RawPatch) throws {
        guard !indices.isEmpty else { return }
        var opened: [(index: Vec3, file: OpenFile)] = []
        for index in indices {
            guard let file = try OpenFile.openIfExists(filePath(index), writable: true) else {
                throw FormatError(.notFound, path: filePath(index), "data file vanished during the write")
            }
            opened.append((index, file))
        }
        var segments: [(index: Vec3, segment: Int, journal: UndoJournal)] = []
        for (index, file) in opened {
            var journal = UndoJournal()
            journal.writeID = patch.writeID
            for run in try job.runs(file, index) {
                journal.entries += try Self.oldBytes(file, run.start..<(run.start + run.blocks.count * header.blockByteCount))
            }
            segments.append((index, patch.segments[index] ?? 0, journal))
        }
        try writeJournals(segments)
        segments = []  // the old bytes are on disk now; free them
        for index in indices where patch.segments[index] == nil { patch.files.append(index) }
        for index in indices { patch.segments[index, default: 0] += 1 }
        let files = opened
        try Parallel.forEach(files.count) { i in try job.patch(files[i].file, files[i].index) }
    }

    /// The journal entries that save `range` of `file`: the whole pages inside it that are a hole
    /// of the sparse file as a hole, the rest as bytes (a run of raw blocks starts 16 bytes into a
    /// page, so its edges share pages with its neighbours).
    private static func oldBytes(_ file: OpenFile, _ range: Range<Int>) throws -> [UndoJournal.Entry] {
        let page = 4096
        let innerStart = (range.lowerBound + page - 1) / page * page
        let innerEnd = range.upperBound / page * page
        guard innerStart < innerEnd, case let inner = innerStart..<innerEnd, file.isHole(inner) else { return [.init(offset: range.lowerBound, bytes: try file.read(at: range.lowerBound, count: range.count))] }
        var entries: [UndoJournal.Entry] = []
        if inner.lowerBound > range.lowerBound {
            entries.append(.init(offset: range.lowerBound, bytes: try file.read(at: range.lowerBound, count: inner.lowerBound - range.lowerBound)))
        }
        entries.append(.init(offset: inner.lowerBound, holeOf: inner.count))
        if range.upperBound > inner.upperBound {
            entries.append(.init(offset: inner.upperBound, bytes: try file.read(at: inner.upperBound, count: range.upperBound - inner.upperBound)))
        }
        return entries
    }

    /// Checks the header and jump table of every existing data file that `box` meets, so that a
    /// write split into several calls can refuse a corrupt file before it changes anything.
    public func checkFiles(meeting box: Box) throws {
        guard !box.isEmpty else { return }
        for index in box.cellRange(Vec3(repeating: header.fileEdge)).positions {
            if let file = try OpenFile.openIfExists(filePath(index)) {
                _ = try DataFileLayout.read(file, magHeader: header)
            }
        }
    }

    /// Writes `bytes` into the region `box`.
    public func write(_ box: Box, bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write(box, from: $0) }
    }
}

/// One region write into a compressed mag. Each layer of data files (same z) is built from one
/// layer of blocks at a time: the blocks the region touches are merged (decoding the old block
/// when the region covers it only partly) and encoded; then each file of the layer is written to
/// a temporary file in Morton order, untouched blocks keeping their stored bytes.
private struct CompressedRegionWrite {
    let mag: MagDirectory
    let region: Box
    /// Encoded blocks of one layer of files held in memory before they go to a spill file.
    let memoryLimit: Int
    /// The data files to write (nil: every one the region meets).
    let include: (@Sendable (Vec3) -> Bool)?

    func run(_ slab: (Box) throws -> UnsafeRawPointer) throws {
        let h = mag.header
        let files = region.cellRange(Vec3(repeating: h.fileEdge)).positions.filter { include?($0) ?? true }
        var prepared: [(temporary: String, final: String)] = []
        do {
            for (fz, layer) in Dictionary(grouping: files, by: \.z).sorted(by: { $0.key < $1.key }) {
                // Layouts only: a layer can have thousands of files, more than may be open at once.
                var old: [Vec3: ClosedDataFile] = [:]
                for index in layer { old[index] = try DataFileReader.open(mag, index)?.closed }
                let stash = EncodedBlocks(directory: mag.path, memoryLimit: memoryLimit)
                let zEnd = min(region.end.z, (fz + 1) * h.fileEdge)
                var z = max(region.offset.z, fz * h.fileEdge)
                while z < zEnd {
                    let next = min(zEnd, (z / h.blockLength + 1) * h.blockLength)
                    let part = Box(offset: Vec3(region.offset.x, region.offset.y, z), size: Vec3(region.size.x, region.size.y, next - z))
                    let source = SendableConstAddress(try slab(part))
                    let tasks = layer.flatMap { index in mag.blocks(ofFile: index, meeting: part).map { (index, $0.number, $0.box) } }
                    let readers = old
                    let encoded = try Parallel.map(tasks.count) { i in
                        let (index, number, box) = tasks[i]
                        return try encode(box, number: number, old: readers[index], from: source.pointer, layout: part)
                    }
                    for (task, bytes) in zip(tasks, encoded) { try stash.put(task.0, task.1, bytes) }
                    z = next
                }
                // Many small files: one worker per file; a few large ones: workers per block.
                if layer.count >= 2 * Parallel.coreCount {
                    let done = Mutex<[(temporary: String, final: String)]>([])
                    defer { prepared += done.withLock { $0 } }
                    let readers = old
                    try Parallel.forEach(layer.count) { i in
                        let file = try prepare(layer[i], stash: stash, old: readers[layer[i]], parallel: false)
                        done.withLock { $0.append(file) }
                    }
                } else {
                    for index in layer { prepared.append(try prepare(index, stash: stash, old: old[index], parallel: true)) }
                }
            }
        } catch {
            prepared.forEach { PathOps.remove($0.temporary) }
            throw error
        }
        try AtomicFile.putInPlace(prepared)
    }

    /// Writes the new version of data file `index` to a temporary file beside it.
    /// - Returns: the temporary file's path and the data file's path.
    private func prepare(_ index: Vec3, stash: EncodedBlocks, old: ClosedDataFile?, parallel: Bool) throws -> (temporary: String, final: String) {
        let old = try old?.open()
        let path = mag.filePath(index)
        try PathOps.makeDirectories(PathOps.dirname(path))
        let blocks = try stash.takeFile(index)
        let temporary = try AtomicFile.prepare(path, sync: false) { file in
            try mag.writeDataFile(file, parallel: parallel) { n in
                if let bytes = try blocks.bytes(n) { return .encoded(bytes) }
                guard let old else { return .zero }
                return .encoded(try old.storedBlock(n))
            }
        }
        return (temporary, path)
    }

    /// The encoded new version of block `number` (laid out as `box`): the region's voxels in it,
    /// over the old block where the region covers it only partly.
    private func encode(_ box: Box, number: Int, old: ClosedDataFile?, from source: UnsafeRawPointer, layout part: Box) throws -> [UInt8] {
        let h = mag.header
        return try withUnsafeTemporaryAllocation(byteCount: h.blockByteCount, alignment: 16) { scratch in
            if box.intersection(region) != box {
                if let old {
                    // Only blocks on the region's edge; the file is open just for this block.
                    try old.open().decode(block: number, into: scratch)
                } else {
                    scratch.initializeMemory(as: UInt8.self, repeating: 0)
                }
            }
            RegionCopy.copy(
                box.intersection(part)!, voxelSize: h.voxelSize, from: source, layout: part,
                to: scratch.baseAddress!, layout: box)
            return mag.encodeBlock(UnsafeRawBufferPointer(scratch))
        }
    }
}
/// A read-only address handed to parallel workers.
struct SendableConstAddress: @unchecked Sendable {
    let pointer: UnsafeRawPointer
    init(_ pointer: UnsafeRawPointer) { self.pointer = pointer }
}

/// One region write: the source bytes and the per-file work.
private struct WriteJob: Sendable {
    let mag: MagDirectory
    let region: Box
    let source: SendableConstAddress
    /// Parallel over the blocks (runs of blocks) of one file when the write touches one file, or
    /// over files.
    let parallelBlocks: Bool

    var header: WKWHeader { mag.header }

    private func forEachBlock(_ count: Int, _ body: @Sendable (Int) throws -> Void) throws {
        if parallelBlocks {
            try Parallel.forEach(count, body)
        } else {
            for i in 0..<count { try body(i) }
        }
    }

    /// Fills `block` (one decoded block laid out as `box`) with the region's voxels inside it.
    private func merge(into block: UnsafeMutableRawBufferPointer, box: Box) {
        let part = box.intersection(region)!
        RegionCopy.copy(
            part, voxelSize: header.voxelSize, from: source.pointer, layout: region, to: block.baseAddress!, layout: box)
    }

    /// One run of blocks of a raw file: consecutive Morton numbers lie next to each other, so
    /// each run (up to 1 MiB) is merged in one buffer and written with one call, not one per block.
    struct Run {
        var start: Int
        var blocks: ArraySlice<(number: Int, box: Box)>
    }

    /// The runs of blocks of raw file `index` (open as `file`) that the region meets.
    func runs(_ file: OpenFile, _ index: Vec3) throws -> [Run] {
        let layout = try DataFileLayout.read(file, magHeader: header)
        let blocks = mag.blocks(ofFile: index, meeting: region).sorted { $0.number < $1.number }
        let most = max(1, (1 << 20) / header.blockByteCount)
        var runs: [Run] = []
        var first = 0
        for i in blocks.indices where i + 1 == blocks.count || blocks[i + 1].number != blocks[i].number + 1 || i + 1 - first == most {
            runs.append(Run(start: layout.range(ofBlock: blocks[first].number).lowerBound, blocks: blocks[first...i]))
            first = i + 1
        }
        return runs
    }

    /// Writes the region's voxels into the blocks of raw file `index`, open as `file`.
    func patch(_ file: OpenFile, _ index: Vec3) throws {
        let planned = try runs(file, index)
        let blockBytes = header.blockByteCount
        try forEachBlock(planned.count) { r in
            let run = planned[r]
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: run.blocks.count * blockBytes, alignment: 16)
            defer { buffer.deallocate() }
            for (k, block) in run.blocks.enumerated() {
                let slot = UnsafeMutableRawBufferPointer(rebasing: buffer[(k * blockBytes)..<((k + 1) * blockBytes)])
                if block.box.intersection(region) != block.box {
                    try file.read(at: run.start + k * blockBytes, into: slot)
                }
                merge(into: slot, box: block.box)
            }
            try file.write(at: run.start, UnsafeRawBufferPointer(buffer))
        }
    }
}
