import Synchronization

/// Region writes: raw files are patched block by block; compressed files are read, merged and
/// rewritten whole into a temporary file, and all of them are renamed into place only once every
/// one is ready, so a corrupt file anywhere in the region leaves every file as it was.
extension MagDirectory {
    /// Writes `source` (the region's bytes in C order) into the region `box`.
    public func write(_ box: Box, from source: UnsafeRawBufferPointer) throws {
        try checkRegion(box, byteCount: source.count)
        guard !box.isEmpty, let base = source.baseAddress else { return }
        let files = box.cellRange(Vec3(repeating: header.fileEdge)).positions
        let job = WriteJob(mag: self, region: box, source: SendableConstAddress(base), parallelBlocks: files.count == 1)
        if header.blockType.isCompressed {
            try writeCompressed(job, files: files)
        } else {
            try writeRaw(job, files: files)
        }
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

    private func writeRaw(_ job: WriteJob, files: [Vec3]) throws {
        // Check every existing file first: a bad one must stop the write before anything changes.
        for index in files {
            if let file = try OpenFile.openIfExists(filePath(index)) {
                _ = try DataFileLayout.read(file, magHeader: header)
            }
        }
        try Parallel.forEach(files.count) { i in try job.patchRawFile(files[i]) }
    }

    private func writeCompressed(_ job: WriteJob, files: [Vec3]) throws {
        let prepared = Mutex<[(temporary: String, final: String)]>([])
        do {
            try Parallel.forEach(files.count) { i in
                let final = filePath(files[i])
                let temporary = try job.prepareCompressedFile(files[i])
                prepared.withLock { $0.append((temporary, final)) }
            }
        } catch {
            prepared.withLock { $0.forEach { PathOps.remove($0.temporary) } }
            throw error
        }
        let ready = prepared.withLock { $0 }
        for (temporary, final) in ready { try PathOps.rename(temporary, to: final) }
        for directory in Set(ready.map { PathOps.dirname($0.final) }) { PathOps.syncDirectory(directory) }
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
    /// Parallel over the blocks of one file (when the write touches one file) or over files.
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

    /// Patches the blocks of one raw file in place, creating the (sparse, full-length) file if needed.
    func patchRawFile(_ index: Vec3) throws {
        let path = mag.filePath(index)
        if !PathOps.exists(path) {
            try PathOps.makeDirectories(PathOps.dirname(path))
            let header = self.header
            try AtomicFile.write(path) { file in
                try header.encoded(dataOffset: header.dataFileDataOffset).withUnsafeBytes { try file.write(at: 0, $0) }
                try file.resize(to: header.rawFileLength)
            }
        }
        guard let file = try OpenFile.openIfExists(path, writable: true) else {
            throw WKWError(.notFound, path: path, "data file vanished during the write")
        }
        let layout = try DataFileLayout.read(file, magHeader: header)
        let blocks = mag.blocks(ofFile: index, meeting: region)
        let blockBytes = header.blockByteCount
        try forEachBlock(blocks.count) { i in
            let (number, box) = blocks[i]
            let range = layout.range(ofBlock: number)
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: blockBytes, alignment: 16)
            defer { scratch.deallocate() }
            if box.intersection(region) != box {
                try file.read(at: range.lowerBound, into: scratch)
            }
            merge(into: scratch, box: box)
            try file.write(at: range.lowerBound, UnsafeRawBufferPointer(scratch))
        }
    }

    /// Writes the merged new version of one compressed file to a temporary file beside it,
    /// streaming it in batches: untouched blocks keep their stored bytes, touched ones are merged
    /// (decoding the old block when the region covers it only partly) and encoded.
    /// - Returns: the temporary file's path, ready to be renamed over the data file.
    func prepareCompressedFile(_ index: Vec3) throws -> String {
        let path = mag.filePath(index)
        let header = self.header
        let blockBytes = header.blockByteCount
        let old: (layout: DataFileLayout, bytes: [UInt8])? = try OpenFile.openIfExists(path).map { file in
            let layout = try DataFileLayout.read(file, magHeader: header)
            return (layout, try file.read(at: 0, count: layout.fileSize))
        }
        var touched = [Int: Box]()
        for block in mag.blocks(ofFile: index, meeting: region) { touched[block.number] = block.box }
        let boxes = touched
        try PathOps.makeDirectories(PathOps.dirname(path))
        return try AtomicFile.prepare(path) { file in
            try mag.writeDataFile(file) { n in
                guard let box = boxes[n] else {
                    guard let old else { return .zero }
                    return .encoded(Array(old.bytes[old.layout.range(ofBlock: n)]))
                }
                var block = [UInt8](repeating: 0, count: blockBytes)
                try block.withUnsafeMutableBytes { scratch in
                    if box.intersection(self.region) != box, let old {
                        try old.bytes.withUnsafeBytes { bytes in
                            let stored = UnsafeRawBufferPointer(rebasing: bytes[old.layout.range(ofBlock: n)])
                            try old.layout.decode(block: n, stored: stored, into: scratch)
                        }
                    }
                    self.merge(into: scratch, box: box)
                }
                return .decoded(block)
            }
        }
    }
}
