#if canImport(Glibc)
    import Glibc
#endif

/// Writing regions into a Zarr3 array. Each shard (or unsharded chunk file) that the region
/// touches is rebuilt whole and replaced atomically (temporary file, fsync, rename, directory
/// fsync), under that file's lock: after a crash every file is its old or its new content, and
/// concurrent writers of one file take turns, each merging into what the other wrote.
/// As webknossos does, chunks that hold only the fill value are not stored, and a shard left
/// without chunks is removed.
extension Zarr3Array {
    /// The file whose bytes serve as the locks of the array's data files. `zarr.json` cannot:
    /// it is replaced when the shape grows, and a lock lives on the file it was taken on.
    var lockFilePath: String { path + "/" + Self.lockFileName }
    public static let lockFileName = ".wkfs-lock"

    /// The lock byte of data file `index`, as for WKW mags (`MagDirectory.lockByte`).
    static func lockByte(_ index: Vec3) -> Int { MagDirectory.lockByte(index) }

    /// Takes the write locks of data files `indices` (ascending, so writers cannot deadlock).
    public func lockFiles(_ indices: [Vec3]) throws -> MagLock {
        guard !indices.isEmpty else { return MagLock(nil) }
        // The lock file is created on first use; it holds no data.
        let fd = Glibc.open(lockFilePath, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if fd >= 0 { close(fd) }
        return MagLock(try FileLock.lock(lockFilePath, ranges: MagDirectory.lockRanges(indices), exclusive: true)!)
    }

    /// Why this array's chunks cannot be written, known before any file is touched (nil: they
    /// can): a write that failed at its second file would have replaced the first already.
    public var writeProblem: String? {
        if let sharding = metadata.sharding, !sharding.indexAtEnd { return "writing shards with the index at the start is not supported" }
        for case .blosc(let settings) in metadata.codecs.compression where !Zarr3Compression.bloscCompresses(with: settings.compressor) {
            return "the array's chunks are blosc '\(settings.compressor)', which this machine's blosc library cannot write (it has \(Zarr3Compression.bloscCompressors))"
        }
        return nil
    }

    private func refuseUnwritable() throws {
        if let problem = writeProblem { throw FormatError(.invalidArgument, path: path + "/" + Self.metadataName, problem) }
    }

    /// Writes `box` (mag voxels) from `source`, which holds exactly its bytes, `(z, y, x, c)` C order.
    public func write(_ box: Box, from source: UnsafeRawBufferPointer) throws {
        try refuseUnwritable()
        guard box.byteCount(voxelSize: voxelBytes) == source.count else {
            throw FormatError(.invalidArgument, path: path, "region \(box) does not match \(source.count) bytes of data")
        }
        guard box.offset.x >= 0, box.offset.y >= 0, box.offset.z >= 0 else {
            throw FormatError(.invalidArgument, path: path, "region \(box) starts below 0")
        }
        guard box.end.x <= Int(Int32.max), box.end.y <= Int(Int32.max), box.end.z <= Int(Int32.max) else {
            throw FormatError(.invalidArgument, path: path, "region \(box) is too large: it passes 2^31 - 1")
        }
        guard !box.isEmpty, let base = source.baseAddress else { return }
        let address = SendableConstAddress(base)
        let files = box.cellRange(fileShape).positions
        // A write refused for a corrupt file leaves no trace, not even the lock file in an array
        // of another writer: each file it merges into is checked first (its index, and the
        // chunks the region covers only in part).
        if files.count > 1 {
            for index in files { try checkMergeable(index, box) }
        }
        // Every file's lock is held from reading its old chunks until its new version is in
        // place, and the new versions are put in place only once all are ready: a write that
        // fails part way (a corrupt file, a full disk) leaves every file as it was.
        let lock = try lockFiles(files)
        defer { lock.unlock() }
        var prepared: [(temporary: String, final: String)] = []
        var emptied: [String] = []
        do {
            for index in files {
                switch try prepareFile(index, sync: false, parallel: true, blocks: mergeBlocks(index, box, address)) {
                case .replace(let temporary): prepared.append((temporary, filePath(index)))
                case .remove: emptied.append(filePath(index))
                }
            }
        } catch {
            prepared.forEach { PathOps.remove($0.temporary) }
            throw error
        }
        // Readers such as tensorstore read only inside the shape: it covers what was written,
        // from before the new files are in place, so a kill between leaves no data outside it.
        // (zarr.json is read again only when this array's shape falls short.)
        try AtomicFile.putInPlace(prepared) {
            if Self.grownShape(self, toCover: box.end) != size {
                try Self.growShape(of: path, toCover: box.end)
            }
        }
        for file in emptied { try remove(file) }
    }

    /// Throws what preparing data file `index` for `box` would throw for a corrupt file.
    private func checkMergeable(_ index: Vec3, _ box: Box) throws {
        guard let existing = try Zarr3ShardFile.open(self, index) else { return }
        let fileBox = Box(offset: index * fileShape, size: fileShape)
        guard let inFile = fileBox.intersection(box) else { return }
        for local in Box(offset: inFile.offset - fileBox.offset, size: inFile.size).cellRange(chunkShape).positions {
            let chunkBox = Box(offset: fileBox.offset + local * chunkShape, size: chunkShape)
            guard let part = chunkBox.intersection(box), part != chunkBox else { continue }
            let n = blockNumber(local)
            _ = try existing.decode(consecutive: n..<(n + 1))
        }
    }

    /// The chunks of data file `index` with the part of `box` in it: the chunks the region
    /// touches merged (for new encoding), the others as stored.
    private func mergeBlocks(_ index: Vec3, _ box: Box, _ source: SendableConstAddress) throws -> @Sendable (Int) throws -> BlockSource {
        let fileBox = Box(offset: index * fileShape, size: fileShape)
        let existing = try Zarr3ShardFile.open(self, index)
        return { n in
            let chunkBox = Box(offset: fileBox.offset + self.chunkPosition(n) * self.chunkShape, size: self.chunkShape)
            guard chunkBox.intersection(box) != nil else {
                guard let stored = try existing?.storedBytes(ofBlock: n) else { return .zero }
                return .encoded(stored)
            }
            let covered = box.intersection(chunkBox) == chunkBox
            let old = covered ? nil : try existing?.decode(consecutive: n..<(n + 1))
            return .decoded(self.merged(old, chunkBox, box, source.pointer))
        }
    }

    /// Replaces data file `index` atomically (temporary file, fsync, rename) with one whose chunk
    /// `n` (index order) is `blocks(n)`. Chunks of fill values are not stored, as webknossos
    /// does; a shard left without chunks is removed. Call it holding the file's lock.
    public func replaceFile(
        _ index: Vec3, directories: PendingDirectorySyncs? = nil, parallel: Bool = true, blocks: @Sendable (Int) throws -> BlockSource
    ) throws {
        try refuseUnwritable()
        let prepared = try withoutActuallyEscaping(blocks) { blocks in
            try prepareFile(index, sync: true, parallel: parallel, blocks: blocks)
        }
        let file = filePath(index)
        switch prepared {
        case .remove:
            try remove(file)
        case .replace(let temporary):
            try AtomicFile.putInPlace(temporary, at: file, directories: directories)
        }
    }

    /// A data file's new version, not yet in place.
    private enum PreparedFile {
        /// Written to this temporary file beside it.
        case replace(temporary: String)
        /// No chunk holds data: the file is to be removed.
        case remove
    }

    /// Writes the new version of data file `index` (chunk `n` is `blocks(n)`) to a temporary
    /// file, fsynced unless `sync` is false (`AtomicFile.putInPlace` does it then). The caller
    /// has refused an unwritable array (`refuseUnwritable`).
    private func prepareFile(
        _ index: Vec3, sync: Bool, parallel: Bool, blocks: @escaping @Sendable (Int) throws -> BlockSource
    ) throws -> PreparedFile {
        let file = filePath(index)
        let count = blocksPerFile
        // Encoded a batch at a time, so memory stays at one batch of chunks.
        let batch = max(1, min(count, (64 << 20) / max(1, chunkBytes)))
        let produce: @Sendable (Int) throws -> [UInt8]? = { n in
            switch try blocks(n) {
            case .encoded(let bytes): return bytes
            case .decoded(let bytes): return self.isFill(bytes) ? nil : try self.encodeChunk(bytes, path: file)
            case .zero: return nil  // no data: an empty chunk, which reads as the fill value
            }
        }
        guard let sharding = metadata.sharding else {
            guard let bytes = try produce(0) else { return .remove }
            try PathOps.makeDirectories(PathOps.dirname(file))
            return .replace(temporary: try AtomicFile.prepare(file, sync: sync) { out in try bytes.withUnsafeBytes { try out.write(at: 0, $0) } })
        }
        var entries = [UInt64](repeating: ShardIndex.empty, count: 2 * count)
        var stored = false
        try PathOps.makeDirectories(PathOps.dirname(file))
        let temporary = try AtomicFile.prepare(file, sync: sync) { out in
            var offset = 0
            var start = 0
            while start < count {
                let numbers = Array(start..<min(count, start + batch))
                let pieces = parallel ? try Parallel.map(numbers.count) { try produce(numbers[$0]) } : try numbers.map(produce)
                for (n, piece) in zip(numbers, pieces) {
                    guard let piece else { continue }
                    try piece.withUnsafeBytes { try out.write(at: offset, $0) }
                    entries[2 * n] = UInt64(offset)
                    entries[2 * n + 1] = UInt64(piece.count)
                    offset += piece.count
                    stored = true
                }
                start += batch
            }
            let index = Self.encodeIndex(entries, checksum: sharding.indexChecksum)
            try index.withUnsafeBytes { try out.write(at: offset, $0) }
        }
        guard stored else {
            PathOps.remove(temporary)
            return .remove
        }
        return .replace(temporary: temporary)
    }

    /// The shard index bytes: entries little-endian, then the crc32c of those bytes.
    public static func encodeIndex(_ entries: [UInt64], checksum: Bool) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: entries.count * 8)
        bytes.withUnsafeMutableBytes { raw in
            for (i, e) in entries.enumerated() { raw.storeBytes(of: e.littleEndian, toByteOffset: 8 * i, as: UInt64.self) }
        }
        if checksum {
            let crc = bytes.withUnsafeBytes { Zarr3Compression.crc32c($0) }
            withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    /// A chunk of `chunkBox`: `old` (or the fill value) with the part of `box` from `source` over it.
    private func merged(_ old: [UInt8]?, _ chunkBox: Box, _ box: Box, _ source: UnsafeRawPointer) -> [UInt8] {
        var chunk = old ?? fillBytes(voxels: chunkBox.size.volume)
        guard let part = chunkBox.intersection(box) else { return chunk }
        chunk.withUnsafeMutableBytes { target in
            RegionCopy.copy(part, voxelSize: voxelBytes, from: source, layout: box, to: target.baseAddress!, layout: chunkBox)
        }
        return chunk
    }

    /// Whether every element of `chunk` is the fill value.
    func isFill(_ chunk: [UInt8]) -> Bool {
        if fillsWithZero { return chunk.withUnsafeBytes { RegionCopy.isZero($0) } }
        let fill = metadata.fillValue
        let w = fill.count
        return stride(from: 0, to: chunk.count, by: w).allSatisfy { chunk[$0..<($0 + w)].elementsEqual(fill) }
    }

    /// Encodes one chunk given in `(z, y, x, c)` C order with the array's chunk codecs.
    func encodeChunk(_ chunk: [UInt8], path file: String) throws -> [UInt8] {
        var bytes = order == [3, 2, 1, 0] ? chunk : permute(chunk, toZYXC: false)
        if metadata.codecs.bigEndian && metadata.dataType.size > 1 { Self.swapBytes(&bytes, width: metadata.dataType.size) }
        do {
            for codec in metadata.codecs.compression {
                switch codec {
                case .zstd(let level, let checksum):
                    bytes = try bytes.withUnsafeBytes { try Zarr3Compression.zstdCompress($0, level: level, checksum: checksum) }
                case .crc32c:
                    let crc = bytes.withUnsafeBytes { Zarr3Compression.crc32c($0) }
                    withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
                case .blosc(let settings):
                    bytes = try bytes.withUnsafeBytes { try Zarr3Compression.bloscCompress($0, settings, elementSize: metadata.dataType.size) }
                case .gzip(let level):
                    bytes = try bytes.withUnsafeBytes { try Zarr3Compression.gzipCompress($0, level: level) }
                }
            }
        } catch let error as Zarr3CodecError {
            throw FormatError(.invalidArgument, path: file, error.reason)
        }
        return bytes
    }

    /// Removes data file `file` if it exists (its directory synced).
    private func remove(_ file: String) throws {
        guard PathOps.exists(file) else { return }
        guard unlink(file) == 0 || errno == ENOENT else {
            let code = errno
            throw FormatError(.io(errno: code), path: file, "cannot remove: \(String(cString: strerror(code)))")
        }
        try PathOps.syncDirectoryOrThrow(PathOps.dirname(file))
    }
}
