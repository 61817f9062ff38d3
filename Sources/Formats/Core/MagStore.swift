#if canImport(Glibc)
    import Glibc
#endif

/// The on-disk formats of a mag.
public enum DataFormat: String, Sendable, CaseIterable, CustomStringConvertible {
    case wkw
    case zarr3

    public var description: String { rawValue }

    /// Whether a copy within this format keeps data files byte for byte where the layout stays
    /// (`MagStore.copyDataFile`) and writes the others file by file; other copies convert region
    /// by region through the stores.
    public var copiesDataFiles: Bool {
        switch self {
        case .wkw: true
        case .zarr3: false
        }
    }

    /// The file that marks a directory as a mag of this format.
    public var markerFile: String {
        switch self {
        case .wkw: "header.wkw"
        case .zarr3: "zarr.json"
        }
    }
}

/// One mag on disk, whatever its format: a grid of data files (WKW files, Zarr3 shards), each a
/// grid of independently encoded blocks (chunks). Regions are in the mag's own voxels, their
/// bytes `(z, y, x, c)` in C order, little-endian.
public protocol MagStore: Sendable {
    var path: String { get }
    var format: DataFormat { get }
    var voxelType: VoxelType { get }
    var channels: Int { get }
    /// Voxels per edge of one block (chunk).
    var blockShape: Vec3 { get }
    /// Voxels per edge of one data file (shard).
    var fileShape: Vec3 { get }
    /// A short description of how blocks are stored ("LZ4HC", "zstd level 5", "raw").
    var compressionName: String { get }
    var isCompressed: Bool { get }

    /// The data files on disk, as positions in the file grid. Every entry where the format keeps
    /// data files (or directories of them) that cannot be looked at or is something else is added
    /// to `problems`, and the walk goes on past it.
    func dataFiles(problems: inout [FormatError]) -> [Vec3]
    /// The path of data file `index` (which may not exist).
    func filePath(_ index: Vec3) -> String
    /// Reads a region into `destination`, which holds exactly its bytes.
    func read(_ box: Box, into destination: UnsafeMutableRawBufferPointer) throws
    /// Asks the kernel to start fetching the stored bytes of `box` (advice only).
    func prefetch(_ box: Box) throws
    /// Decodes every block of data file `index`.
    /// - Throws: `FormatError` naming the file and what is wrong with it.
    func verifyFile(_ index: Vec3) throws
    /// The number of the block at `position` (in blocks, inside its data file) in the order the
    /// file stores blocks: blocks with consecutive numbers lie together.
    func blockNumber(_ position: Vec3) -> Int
    /// Opens data file `index` for reading its blocks; nil when it does not exist.
    /// - Throws: `FormatError` when it is corrupt.
    func openDataFile(_ index: Vec3) throws -> (any DataFile)?

    // The data files by plane and row, as the mount lists them (`zZ/yY/xX`); the defaults
    // filter `dataFiles()`, a format whose directories follow that grid answers from them.
    /// The z of every plane of data files, ascending.
    /// - Throws: `FormatError` when the files cannot be listed, or (`.corrupt`) when an entry
    ///   where the format keeps a directory of them is something else.
    func fileZs() throws -> [Int]
    /// The y of every row of data files in plane `z`, ascending.
    func fileYs(z: Int) throws -> [Int]
    /// The x of every data file in row (`y`, `z`), ascending.
    func fileXs(y: Int, z: Int) throws -> [Int]
    /// Whether data file `index` is there (nil: not there).
    /// - Throws: `FormatError` when it cannot be looked at (no permission, a broken directory).
    func fileExists(_ index: Vec3) throws -> Bool
    func hasFilePlane(z: Int) throws -> Bool
    func hasFileRow(y: Int, z: Int) throws -> Bool
    /// What killed writers left: temporary files, and data files that an interrupted in-place
    /// write left half-patched (with an undo journal).
    /// - Throws: when a directory cannot be listed.
    func leftovers() throws -> (temporaries: [String], journals: [Vec3])
    /// The data file a temporary file of `leftovers()` stands for; nil for other temporaries.
    func dataFileIndex(ofTemporary file: String) -> Vec3?
    /// Takes the write locks of data files `indices` only when no one holds any of them (nil
    /// otherwise): for finding what a dead writer left.
    func tryLockFiles(_ indices: [Vec3]) throws -> MagLock?
    /// Rolls back the interrupted in-place writes of data files `indices`.
    /// - Returns: the data files rolled back.
    func rollBackInterruptedWrites(_ indices: [Vec3]) throws -> [String]
    /// The undo journal of data file `index`, where the format has them.
    func journalPath(_ index: Vec3) -> String
    /// Whether the data files lie in `zZ/yY` directories on disk (WKW), which a mount can make
    /// and remove; otherwise such directories exist only where data files do.
    var filesInPlaneDirectories: Bool { get }

    // Capabilities a format may have; the defaults (`MagStore+Defaults.swift`) are what a format
    // without them does, so a new format needs none of them to work.
    /// The layout in terms every format shares; nil when blocks or files are not cubes.
    var layout: MagLayout? { get }
    /// What a voxel of a missing block or data file holds: one element (channel) as
    /// little-endian bytes (zeros by default; a Zarr3 array's `fill_value`).
    var fillValue: [UInt8] { get }
    /// The format's own fields in `wkfs info --json` (none by default).
    func describe() -> [(String, JSONValue)]
    /// How blocks and files are laid out, in the mount's `mag.json`.
    func describeLayout() -> [(String, JSONValue)]
    /// Copies data file `index` into `target`, a mag of the same format and layout, keeping its
    /// stored blocks (byte for byte where the format can).
    func copyDataFile(_ index: Vec3, to target: any BlockWritableStore) throws
    /// Whether a reader streaming many small files gains from reading whole files ahead
    /// (`willNeed(files:budget:)`); formats whose files are read ahead by region say false.
    var readsAheadWholeFiles: Bool { get }
    /// The same mag, opened so that reading never writes: no rollback of what a killed writer
    /// left (a read-only mount). Formats whose readers never write return it unchanged.
    func refusingRepairs() -> Self
}

/// One version of one data file, open for reading blocks many times (the mount's block cache):
/// a WKW file with its checked jump table, or a Zarr3 shard with its checked index.
public protocol DataFile: AnyObject, Sendable {
    var path: String { get }
    /// Inode, size and modification time when opened: a different one on disk means a new file.
    var identity: [Int64] { get }
    /// Decodes the blocks `numbers` into one buffer, one after another (each `blockBytes`).
    func decode(consecutive numbers: Range<Int>) throws -> [UInt8]
    /// Whether the blocks `numbers` hold no data at all (a hole, empty chunks): all zeros.
    func isHole(consecutive numbers: Range<Int>) -> Bool
    /// Asks the kernel to start fetching the stored bytes of blocks `numbers` (advice only).
    func prefetch(_ numbers: [Int])
    /// The stored (encoded) bytes of block `n`, as `MagStore.encodeBlock` makes them; nil when
    /// the file holds none for it (an empty Zarr3 chunk).
    func storedBytes(ofBlock n: Int) throws -> [UInt8]?
}

/// One block of a data file being rewritten.
public enum BlockSource: Sendable {
    /// Decoded voxels, to be encoded with the mag's block type.
    case decoded([UInt8])
    /// Bytes already in the mag's block encoding (kept from the old file or encoded earlier).
    case encoded([UInt8])
    /// A block with no data: zeros in WKW, the fill value (stored as an empty chunk) in Zarr3.
    case zero
}

/// A mag whose data files can be rebuilt block by block (the mount's cube writer).
public protocol BlockWritableStore: MagStore {
    /// Encodes one decoded block (`blockBytes`) as the data files store it.
    func encodeBlock(_ decoded: [UInt8]) throws -> [UInt8]
    /// Decodes a block that `encodeBlock` made; `origin` names where it was kept, for errors.
    func decodeBlock(_ encoded: [UInt8], origin: String) throws -> [UInt8]
    /// Takes the write locks of data files `indices`, waiting for other writers (processes,
    /// mounts, machines), and repairs what a killed writer left in them.
    func lockFiles(_ indices: [Vec3]) throws -> MagLock
    /// Replaces data file `index` atomically with one whose block `n` is `blocks(n)`; the
    /// rename is made durable through `directories` (at once when nil).
    func replaceFile(
        _ index: Vec3, directories: PendingDirectorySyncs?, parallel: Bool, blocks: @Sendable (Int) throws -> BlockSource) throws
    /// Writes a region (`(z, y, x, c)` C order, exactly its bytes) into the data files it meets.
    func writeRegion(_ box: Box, from source: UnsafeRawBufferPointer) throws

    // Capabilities a format may have, with defaults (`MagStore+Defaults.swift`).
    /// `writeRegion(_:from:)` into only the data files `files` accepts (the others stay as they
    /// are, or missing).
    func writeRegion(_ box: Box, from source: UnsafeRawBufferPointer, files: @escaping @Sendable (Vec3) -> Bool) throws
    /// Whether `writeRegion(_:slabs:)` holds about one layer of blocks at a time (WKW); a caller
    /// streaming a large region into another format writes it in slabs of whole files instead.
    var streamsLayers: Bool { get }
    /// Writes the region `box`, its voxels given slab by slab: `slab(part)` returns the C-order
    /// bytes of `part`, whole z-planes of `box` from the lowest z up, each part once; the bytes
    /// must stay valid until the next call.
    func writeRegion(_ box: Box, slabs: (Box) throws -> UnsafeRawPointer) throws
    /// Writes data file `index` whole, too large to hold decoded: `voxels` gives the voxels of
    /// each layer of blocks in turn (boxes of the file's x and y, one block thick, lowest z first).
    /// - Returns: false when every voxel was zero and nothing was written.
    @discardableResult
    func writeFileBySlabs(_ index: Vec3, voxels: (Box) throws -> [UInt8]) throws -> Bool
    /// Whether blocks have fixed places in a data file (raw WKW), so a writer can put complete
    /// blocks straight into a new version of it (`newInPlaceFile`) instead of holding them.
    var blocksHaveFixedPlaces: Bool { get }
    /// Starts a new version of data file `index` written in place; only where
    /// `blocksHaveFixedPlaces`.
    func newInPlaceFile(_ index: Vec3) throws -> any InPlaceFile
}

extension MagStore {
    public var voxelBytes: Int { voxelType.size * channels }
    public var blockBytes: Int { blockShape.volume * voxelBytes }
    public var fileBytes: Int { fileShape.volume * voxelBytes }
    /// Blocks per data file along each edge.
    public var blocksPerFileEdge: Vec3 { fileShape.ceilDiv(blockShape) }
    public var blocksPerFile: Int { blocksPerFileEdge.volume }

    public func read(_ box: Box) throws -> [UInt8] {
        guard let count = box.byteCount(voxelSize: voxelBytes) else {
            throw FormatError(.invalidArgument, path: path, "region \(box) is too large")
        }
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(box, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    public func prefetch(_ box: Box) throws {}

    /// Removes the temporary files whose writer is gone: its process (named in the file's name)
    /// no longer runs on this machine, and no writer holds the lock of the data file it belongs
    /// to. A writer in another PID namespace or on another machine that holds no lock (a mount's
    /// cube being written) cannot be seen: run the repair while no such writer runs.
    /// - Returns: the paths removed.
    public func removeStaleTemporaries() throws -> [String] {
        var removed: [String] = []
        for file in try leftovers().temporaries {
            let name = String(file[file.index(after: file.lastIndex(of: "/")!)...])
            guard let owner = AtomicFile.temporaryOwner(name), !AtomicFile.processRuns(owner) else { continue }
            var lock: MagLock?
            if let index = dataFileIndex(ofTemporary: file) {
                guard let free = try tryLockFiles([index]) else { continue }
                lock = free
            }
            if unlink(file) == 0 { removed.append(file) }
            lock?.unlock()
        }
        return removed
    }

    /// The data files on disk, as positions in the file grid.
    /// - Throws: the first problem `dataFiles(problems:)` met (a directory that cannot be listed,
    ///   an entry that is not what it must be: the data under it would be missed).
    public func dataFiles() throws -> [Vec3] {
        var problems: [FormatError] = []
        let files = dataFiles(problems: &problems)
        if let first = problems.first { throw first }
        return files
    }

    public func fileZs() throws -> [Int] { Array(Set(try dataFiles().map(\.z))).sorted() }
    public func fileYs(z: Int) throws -> [Int] { Array(Set(try dataFiles().filter { $0.z == z }.map(\.y))).sorted() }
    public func fileXs(y: Int, z: Int) throws -> [Int] { try dataFiles().filter { $0.z == z && $0.y == y }.map(\.x).sorted() }
    public func fileExists(_ index: Vec3) throws -> Bool { try FileStatus.ofExisting(filePath(index)) != nil }
    public func hasFilePlane(z: Int) throws -> Bool { try fileZs().contains(z) }
    public func hasFileRow(y: Int, z: Int) throws -> Bool { try fileYs(z: z).contains(y) }
    public var filesInPlaneDirectories: Bool { false }
}
