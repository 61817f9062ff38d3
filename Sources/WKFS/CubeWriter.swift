import Formats

#if canImport(Glibc)
    import Glibc
#endif

/// The pending changes of one open cube: changed blocks, decoded in memory up to a budget,
/// complete ones encoded (in memory up to the budget, then in a spill file), all made one new
/// data file at `commit`.
struct CubeWriter {
    let mag: any BlockWritableStore
    /// Mags whose blocks have fixed places (raw WKW) keep complete blocks in place in the new
    /// file (`InPlaceFile`); other mags encode them and hold them (in memory, then in a spill file).
    let inPlace: Bool
    let index: Vec3
    let geometry: CubeGeometry
    /// Decoded blocks held at most before the oldest are spilled (about one slab of blocks).
    let memoryBudget: Int
    /// Bytes of blocks to encode below which one thread is faster than waking the workers.
    private static let parallelEncoding = 256 << 10

    /// The cube starts from zeros (opened with O_TRUNC, truncated, or new), not from the file.
    private(set) var truncated: Bool
    /// The cube's size as the writer sees it: the full size, or what was written since truncation.
    private(set) var size: Int
    // Blocks are looked up several times for every block written, so their state is kept in
    // tables indexed by block number: hashing them in dictionaries was 7% of the mount's time
    // taking `cp` of 8/8 cubes.
    /// Blocks being written, decoded.
    private var dirty: BlockTable<Pending?>
    private var dirtyCount = 0
    /// Complete blocks: encoded in memory (a small cube never needs the spill file), in the spill
    /// file, or (raw mags) already in place in the new file.
    private var stored: BlockTable<Stored>
    private var storedCount = 0
    private var encodedBytes = 0
    private var spill: TemporaryFile?
    private var spillEnd = 0
    /// Raw mags: the new file, written in place as blocks complete.
    private var pendingRaw: (any InPlaceFile)?
    private var tick = 0
    /// The cube-local voxels written, for growing the bounding box.
    private var writtenBox: Box?
    /// The cube-local voxels written, for growing the bounding box: the whole cube once a
    /// truncated one is written back whole (parts a program seeked over are its zeros).
    var written: Box? {
        truncated && size == geometry.cubeBytes ? Box(offset: .zero, size: geometry.shape) : writtenBox
    }
    /// Blocks loaded from the data file because a write covered them only partly, as loaded. At
    /// commit, under the file's lock, a block that another writer (`wkfs write`, another mount)
    /// changed meanwhile is merged byte by byte: this writer's bytes where it changed them, the
    /// file's current bytes elsewhere, so neither change is lost. Kept up to the memory budget.
    private var loadedOriginals: [Int: [UInt8]] = [:]
    private var originalBytes = 0
    /// Past the budget, only a checksum of what was loaded: such a block changed on disk makes
    /// the commit fail (EAGAIN) rather than undo the other writer's change.
    private var loadedFromFile: [Int: UInt64] = [:]
    /// The data file's identity (inode, size, modification time) before the first of those loads:
    /// when it is the same at commit, nothing changed and the blocks need no second look.
    private var loadedIdentity: [Int64]?
    /// The version the last write came from (`write(_:at:cache:version:)`).
    private var version: OpenedFile??
    private var olderThanDisk: Bool?

    private struct Pending {
        var bytes: [UInt8]
        /// Bytes written into it (it is complete at the block's size).
        var written: Int
        /// The write that touched it last, for spilling the oldest first.
        var tick: Int
    }

    private enum Stored {
        case none
        case encoded([UInt8])
        case spilled(offset: Int, count: Int)
        case placed
    }

    init(mag: any BlockWritableStore, index: Vec3, truncated: Bool, memoryBudget: Int) {
        self.mag = mag
        inPlace = mag.blocksHaveFixedPlaces
        self.index = index
        geometry = CubeGeometry(mag)
        self.truncated = truncated
        size = truncated ? 0 : geometry.cubeBytes
        self.memoryBudget = max(memoryBudget, 4 * mag.blockBytes)
        dirty = BlockTable(count: mag.blocksPerFile, empty: nil)
        stored = BlockTable(count: mag.blocksPerFile, empty: .none)
    }

    var hasChanges: Bool { truncated || hasPendingBlocks }

    /// Opened with O_TRUNC (or truncated) and nothing written since: a program may still be about
    /// to write (dd closes a duplicate descriptor first), so this is not yet an error to report.
    var isUntouchedTruncation: Bool { truncated && size == 0 && !hasPendingBlocks }

    private var hasPendingBlocks: Bool { dirtyCount > 0 || storedCount > 0 }

    /// Truncated and not yet written back to the full cube size: a commit now would be refused.
    var isIncomplete: Bool { size != geometry.cubeBytes }

    /// Sets the size (truncate or extend); only 0 and the cube size are meaningful.
    mutating func resize(_ newSize: Int) throws {
        guard newSize <= geometry.cubeBytes else { throw FUSEError(EFBIG, "a cube holds \(geometry.cubeBytes) bytes") }
        if newSize == 0 {
            discard()
            truncated = true
            size = 0
        } else if newSize == geometry.cubeBytes {
            size = newSize
        } else {
            throw FUSEError(EINVAL, "a cube is always \(geometry.cubeBytes) bytes; truncate to \(newSize) refused")
        }
    }

    /// Writes bytes at `offset` into the pending blocks.
    /// - Parameter version: the version of the data file the writing program reads (`.some(nil)`:
    ///   none, zeros), which blocks it writes only partly start from; nil: the one on disk. A
    ///   program holding an older version (a memory map made before another program replaced the
    ///   file) writes back whole pages of it: merged at commit against that version, the bytes
    ///   it did not change keep the other program's change.
    mutating func write(_ data: UnsafeRawBufferPointer, at offset: Int, cache: BlockCache, version: OpenedFile?? = nil) throws {
        guard offset + data.count <= geometry.cubeBytes else {
            throw FUSEError(EFBIG, "write of \(data.count) bytes at \(offset) passes the cube's end (\(geometry.cubeBytes) bytes)")
        }
        self.version = version
        guard !data.isEmpty else { return }
        let range = offset..<(offset + data.count)
        size = max(size, range.upperBound)
        let touched = geometry.touchedBox(range)
        writtenBox = writtenBox.map { $0.union(touched) } ?? touched

        var completed: [Int] = []
        tick += 1
        // Whole rows go block by block (one lookup per block); a partial row at either end goes
        // piece by piece.
        let rowBytes = geometry.rowBytes
        let firstFullRow = (range.lowerBound + rowBytes - 1) / rowBytes
        let endFullRow = range.upperBound / rowBytes
        if firstFullRow < endFullRow {
            let headEnd = firstFullRow * rowBytes
            try writePieces(data, offset: offset, range: range.lowerBound..<headEnd, cache: cache, completed: &completed)
            let rows = headEnd..<(endFullRow * rowBytes)
            let (_, boxes) = geometry.rowBoxes(rows)
            var position = headEnd
            for box in boxes {
                try writeBox(box, from: data.baseAddress! + (position - offset), cache: cache, completed: &completed)
                position += box.voxelCount * geometry.voxelSize
            }
            try writePieces(data, offset: offset, range: rows.upperBound..<range.upperBound, cache: cache, completed: &completed)
        } else {
            try writePieces(data, offset: offset, range: range, cache: cache, completed: &completed)
        }
        if !completed.isEmpty { try completeBlocks(completed) }
        if dirtyCount * mag.blockBytes > memoryBudget {
            let pending = dirty.numbers { $0 != nil }
            let oldest = pending.sorted { dirty[$0]!.tick < dirty[$1]!.tick }.prefix(dirtyCount / 2)
            try completeBlocks(Array(oldest))
        }
    }

    /// The pending block `number`, loaded on first touch; one about to be overwritten whole
    /// (`whole`) starts uninitialized instead (no zeros written, no old block decoded).
    private mutating func touch(_ number: Int, cache: BlockCache, whole: Bool = false) throws {
        if dirty[number] == nil {
            let count = mag.blockBytes
            let fromFile: Bool
            // A block written whole is loaded too when the writer's version is older than the
            // file on disk: the program may be writing back stale bytes of it.
            if !truncated, case .none = stored[number], try !whole || versionIsOlderThanDisk(cache) { fromFile = true } else { fromFile = false }
            if fromFile && loadedIdentity == nil { loadedIdentity = try baseFile(cache)?.reader.identity ?? [] }
            let bytes = !fromFile && whole ? [UInt8](unsafeUninitializedCapacity: count) { _, n in n = count } : try load(number, cache: cache)
            if fromFile && loadedOriginals[number] == nil && loadedFromFile[number] == nil {
                if originalBytes + count <= memoryBudget {
                    loadedOriginals[number] = bytes  // shares storage until the block is written
                    originalBytes += count
                } else {
                    loadedFromFile[number] = Checksum.words(bytes)
                }
            }
            dirty[number] = Pending(bytes: bytes, written: 0, tick: tick)
            dirtyCount += 1
        }
        dirty[number]!.tick = tick
    }

    /// Copies whole rows (`box`, cube-local, C order at `source`) into the pending blocks.
    private mutating func writeBox(
        _ box: Box, from source: UnsafeRawPointer, cache: BlockCache, completed: inout [Int]
    ) throws {
        let b = mag.blockShape
        let vs = geometry.voxelSize
        for position in box.cellRange(b).positions {
            let number = mag.blockNumber(position)
            let blockBox = Box(offset: position * b, size: b)
            let part = blockBox.intersection(box)!
            try touch(number, cache: cache, whole: part == blockBox)
            dirty[number]!.bytes.withUnsafeMutableBytes { block in
                RegionCopy.copy(part, voxelSize: vs, from: source, layout: box, to: block.baseAddress!, layout: blockBox)
            }
            dirty[number]!.written += part.voxelCount * vs
            if dirty[number]!.written >= mag.blockBytes { completed.append(number) }
        }
    }

    /// Copies bytes `range` (within at most a row or two) piece by piece: each piece is the part
    /// of one row inside one block.
    private mutating func writePieces(
        _ data: UnsafeRawBufferPointer, offset: Int, range: Range<Int>, cache: BlockCache, completed: inout [Int]
    ) throws {
        let vs = geometry.voxelSize
        let shape = geometry.shape
        let b = mag.blockShape
        var position = range.lowerBound
        while position < range.upperBound {
            let voxel = position / vs
            let x = voxel % shape.x
            let y = voxel / shape.x % shape.y
            let z = voxel / (shape.x * shape.y)
            let blockEndX = (x / b.x + 1) * b.x
            let pieceEnd = min(range.upperBound, (voxel - x + blockEndX) * vs)
            let number = mag.blockNumber(Vec3(x / b.x, y / b.y, z / b.z))
            try touch(number, cache: cache)
            let inBlock = ((x % b.x) + (y % b.y) * b.x + (z % b.z) * b.x * b.y) * vs + position % vs
            let count = pieceEnd - position
            dirty[number]!.bytes.withUnsafeMutableBytes { block in
                (block.baseAddress! + inBlock).copyMemory(from: data.baseAddress! + (position - offset), byteCount: count)
            }
            dirty[number]!.written += count
            if dirty[number]!.written >= mag.blockBytes { completed.append(number) }
            position = pieceEnd
        }
    }

    /// The current content of block `number`.
    private func load(_ number: Int, cache: BlockCache) throws -> [UInt8] {
        switch stored[number] {
        case .placed: return try pendingRaw!.readBlock(number)
        case .encoded(let bytes): return try mag.decodeBlock(bytes, origin: "pending block")
        case .spilled(let offset, let count):
            return try mag.decodeBlock(try spill!.read(at: offset, count: count), origin: "spill file")
        case .none:
            if truncated { return [UInt8](repeating: 0, count: mag.blockBytes) }
            return try cache.blocks(mag, index, [number], from: try baseFile(cache))[0].bytes
        }
    }

    /// The version of the data file that blocks are loaded from (nil: none, zeros).
    private func baseFile(_ cache: BlockCache) throws -> OpenedFile? {
        if let version { return version }
        return try cache.current(mag, index)
    }

    /// The writing program's version is not the data file on disk now (checked once per batch
    /// of changes).
    private mutating func versionIsOlderThanDisk(_ cache: BlockCache) throws -> Bool {
        guard let version else { return false }
        if let known = olderThanDisk { return known }
        let older = (version?.reader.identity ?? []) != (try cache.current(mag, index)?.reader.identity ?? [])
        olderThanDisk = older
        return older
    }

    /// Records block `number` as complete in `state`; it is no longer dirty.
    private mutating func store(_ number: Int, _ state: Stored) {
        if case .encoded(let old) = stored[number] { encodedBytes -= old.count }
        if case .none = stored[number] { storedCount += 1 }
        if case .encoded(let new) = state { encodedBytes += new.count }
        stored[number] = state
        dirty[number] = nil
        dirtyCount -= 1
    }

    /// Takes blocks out of the decoded ones: raw blocks go to their places in the new file,
    /// compressed ones are encoded and held (spilled to a file past the memory budget).
    private mutating func completeBlocks(_ numbers: [Int]) throws {
        var unique: [Int] = []
        for number in numbers.sorted() where unique.last != number && dirty[number] != nil { unique.append(number) }
        let numbers = unique
        if inPlace {
            // Raw blocks have fixed places: write them straight into the new file.
            if pendingRaw == nil { pendingRaw = try mag.newInPlaceFile(index) }
            for number in numbers {
                try pendingRaw!.writeBlock(number, dirty[number]!.bytes)
                store(number, .placed)
            }
            return
        }
        let blocks = numbers.map { dirty[$0]!.bytes }
        let mag = self.mag
        let work = blocks.count * mag.blockBytes
        let encodedBlocks = work < Self.parallelEncoding ? try blocks.map { try mag.encodeBlock($0) } : try Parallel.map(blocks.count) { try mag.encodeBlock(blocks[$0]) }
        for (number, bytes) in zip(numbers, encodedBlocks) { store(number, .encoded(bytes)) }
        if encodedBytes > memoryBudget { try spillEncoded() }
    }

    /// Moves the encoded blocks held in memory to the spill file, in one write.
    private mutating func spillEncoded() throws {
        if spill == nil { spill = try TemporaryFile(directory: mag.path) }
        var chunk: [UInt8] = []
        chunk.reserveCapacity(encodedBytes)
        var places: [(number: Int, offset: Int, count: Int)] = []
        for number in stored.numbers(where: { if case .encoded = $0 { true } else { false } }) {
            guard case .encoded(let bytes) = stored[number] else { continue }
            places.append((number, spillEnd + chunk.count, bytes.count))
            chunk.append(contentsOf: bytes)
        }
        try spill!.write(at: spillEnd, chunk)
        spillEnd += chunk.count
        for place in places { stored[place.number] = .spilled(offset: place.offset, count: place.count) }
        encodedBytes = 0
    }

    /// Makes the pending changes one new data file, replacing the old one atomically.
    /// - Throws: `FUSEError(EINVAL)` when the cube's size is not the full cube size; nothing is
    ///   written then and the pending changes stay (a later write may complete the cube).
    /// The rename is made durable later, through `directories`.
    mutating func commit(cache: BlockCache, directories: PendingDirectorySyncs) throws {
        guard hasChanges else { return }
        guard size == geometry.cubeBytes else {
            throw FUSEError(EINVAL, "a cube must be exactly \(geometry.cubeBytes) bytes, got \(size); nothing was written")
        }
        // The file's lock, held from reading the old blocks to the rename, keeps the changes of
        // other writers (`wkfs write`, other mounts) of the same file; taking it also rolls back
        // a patch a killed writer left in it.
        let lock = try mag.lockFiles([index])
        defer { lock.unlock() }
        let base = truncated ? nil : try cache.reader(mag, index)
        try mergeBlocksChangedOnDisk(base)
        // Snapshots for the block closures (copies of the arrays only if a write came between).
        let dirtyBlocks = dirty
        let storedBlocks = stored
        if inPlace {
            if pendingRaw == nil { pendingRaw = try mag.newInPlaceFile(index) }
            // On failure the new file stays pending with what it holds, so a later commit can retry.
            try pendingRaw!.finish(directories: directories) { n in
                if let pending = dirtyBlocks[n] { return .decoded(pending.bytes) }
                if case .placed = storedBlocks[n] { return nil }
                if let base, let stored = try base.storedBytes(ofBlock: n) { return .encoded(stored) }
                return .zero
            }
            pendingRaw = nil
            cache.invalidate(mag.filePath(index))
            discard()
            return
        }
        let spill = self.spill
        // A truncated cube starts from zeros, so blocks nobody wrote since are zeros, also in an
        // array whose missing chunks read as a fill value (`dd conv=sparse` seeks over the zeros
        // it copies: they read as the fill value).
        let unwritten: BlockSource = truncated && !mag.fillsWithZero ? .decoded([UInt8](repeating: 0, count: mag.blockBytes)) : .zero
        // A small cube written whole (`cp`) has every block encoded already: gathering them on
        // one thread is faster than waking the workers (5% of the mount's time taking 8/8 cubes).
        // A large one still reads its unchanged blocks from the old file in parallel.
        let parallel = dirtyCount * mag.blockBytes >= Self.parallelEncoding || geometry.cubeBytes > 4 << 20
        try mag.replaceFile(index, directories: directories, parallel: parallel) { n in
            if let pending = dirtyBlocks[n] { return .decoded(pending.bytes) }
            switch storedBlocks[n] {
            case .encoded(let bytes): return .encoded(bytes)
            case .spilled(let offset, let count): return .encoded(try spill!.read(at: offset, count: count))
            case .placed, .none: break
            }
            if let base, let stored = try base.storedBytes(ofBlock: n) { return .encoded(stored) }
            return unwritten
        }
        cache.invalidate(mag.filePath(index))
        discard()
    }

    /// Fills `destination` with the bytes from `offset` on of a cube truncated and not yet
    /// written back whole (`isIncomplete`, which only a truncated one is): what was written since,
    /// zeros elsewhere, nothing past `size`; returns how many bytes.
    func readIncomplete(offset: Int, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset < size else { return 0 }
        let zero = CachedBlock(group: [UInt8](repeating: 0, count: mag.blockBytes), offset: 0, count: mag.blockBytes, isZero: true)
        let reading = CubeReading(
            mag: mag,
            blocks: { numbers in
                try numbers.map { n in
                    try pendingContent(n).map { CachedBlock(group: $0, offset: 0, count: $0.count, isZero: false) } ?? zero
                }
            },
            prefetch: { _ in false })
        let count = min(destination.count, size - offset)
        return try reading.readCube(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: destination[0..<count]))
    }

    /// Brings in what other writers changed, since it was loaded, in the blocks this writer
    /// loaded from the file (`base`, read under the file's lock): merged where the original is
    /// kept, refused (EAGAIN, nothing written) where only its checksum is.
    private mutating func mergeBlocksChangedOnDisk(_ base: (any DataFile)?) throws {
        guard !loadedOriginals.isEmpty || !loadedFromFile.isEmpty, (base?.identity ?? []) != loadedIdentity else { return }
        let count = mag.blockBytes
        func current(_ number: Int) throws -> [UInt8] {
            var bytes = mag.fillBytes(voxels: count / mag.voxelBytes)  // a file that is gone reads as the fill value
            if let base { bytes = try base.decode(consecutive: number..<(number + 1)) }
            return bytes
        }
        for (number, loaded) in loadedFromFile where Checksum.words(try current(number)) != loaded {
            throw FUSEError(
                EAGAIN,
                "another writer changed block \(number) of this cube while this write was under way, and the write covered the block only partly; nothing was written: write the cube again")
        }
        for (number, original) in loadedOriginals {
            let theirs = try current(number)
            guard theirs != original else { continue }
            guard var merged = try pendingContent(number) else { continue }
            for i in 0..<count where merged[i] == original[i] { merged[i] = theirs[i] }
            try replacePending(number, merged)
        }
    }

    /// The pending content of block `number`, wherever it is held; nil when it has none.
    private func pendingContent(_ number: Int) throws -> [UInt8]? {
        if let pending = dirty[number] { return pending.bytes }
        switch stored[number] {
        case .placed: return try pendingRaw!.readBlock(number)
        case .encoded(let bytes): return try mag.decodeBlock(bytes, origin: "pending block")
        case .spilled(let offset, let count): return try mag.decodeBlock(try spill!.read(at: offset, count: count), origin: "spill file")
        case .none: return nil
        }
    }

    /// Replaces the pending content of block `number`, where it is held.
    private mutating func replacePending(_ number: Int, _ bytes: [UInt8]) throws {
        if dirty[number] != nil {
            dirty[number]!.bytes = bytes
            return
        }
        switch stored[number] {
        case .placed:
            try pendingRaw!.writeBlock(number, bytes)
        case .encoded(let old):
            encodedBytes -= old.count
            let new = try mag.encodeBlock(bytes)
            encodedBytes += new.count
            stored[number] = .encoded(new)
        case .spilled:
            let new = try mag.encodeBlock(bytes)
            encodedBytes += new.count
            stored[number] = .encoded(new)
        case .none:
            break
        }
    }

    /// Drops every pending change.
    mutating func discard() {
        pendingRaw?.abandon()
        pendingRaw = nil
        writtenBox = nil
        loadedFromFile = [:]
        loadedOriginals = [:]
        originalBytes = 0
        loadedIdentity = nil
        olderThanDisk = nil
        dirty = BlockTable(count: mag.blocksPerFile, empty: nil)
        dirtyCount = 0
        stored = BlockTable(count: mag.blocksPerFile, empty: .none)
        storedCount = 0
        encodedBytes = 0
        spill = nil
        spillEnd = 0
        truncated = false
        size = geometry.cubeBytes
    }
}
