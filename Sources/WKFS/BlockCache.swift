#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import Synchronization
import Formats

/// Decoded blocks shared by every open cube, bounded in bytes, recently used ones kept.
/// Also keeps the open data files (with their checked jump tables) that blocks come from.
///
/// The least recently used groups leave first (`RecentlyUsed`): a layer of blocks that each
/// z-plane of a cube crosses again stays while it fits.
final class BlockCache: Sendable {
    /// A group of blocks of one version of one file. Each opened file version (a `DataFile`) gets its
    /// own number, so a file replaced or changed by anyone (the mount or another program) has new
    /// keys, and its old blocks are never served again.
    struct Key: Hashable, Sendable {
        var file: Int
        var group: Int
    }

    /// Decoded bytes of a group and what they count against the capacity: the shared group of
    /// zeros (a hole, or blocks that decode to zeros) costs only its key and reference.
    private struct Entry {
        var bytes: [UInt8]
        var cost: Int
        var isZero = false
    }

    /// What an entry costs beyond its bytes: its slot, key and place in the dictionary (about
    /// 150 bytes, measured as RSS with a cache full of groups of zeros, which cost only this).
    static let entryCost = 256

    private struct Storage {
        var groups: RecentlyUsed<Key, Entry>
        var readers: [String: OpenedFile] = [:]
        var nextFileNumber = 0
        /// One lock per file, held while its blocks are decoded (milliseconds). `NSLock` is a plain
        /// pthread mutex whose waiters sleep; `Mutex` is a priority-inheritance futex here, whose
        /// waiters spun in the kernel while the holder ran (a tenth of the server's time).
        var decodeLocks: [String: NSLock] = [:]
        /// One shared group of zeros per size (one size per mag geometry: a handful). Kept for
        /// the mount's life, so entries that point at one cost only `entryCost`.
        var zeroGroups: [Int: [UInt8]] = [:]
    }

    /// Bytes of decoded blocks kept between requests. The mount's `cache_size` also pays for the
    /// blocks and reply buffers of requests in flight (readahead keeps several going, about 60 MiB
    /// at most), so the kept part is that much smaller and the server stays near `cache_size`.
    let capacity: Int
    private let storage: Mutex<Storage>
    /// For `.wkfs/stats` (`Statistics`).
    private let hits = Atomic<Int>(0)
    private let misses = Atomic<Int>(0)
    private let zeroGroups = Atomic<Int>(0)
    private let decodedBytes = Atomic<Int>(0)
    /// Read-ahead advice runs here, off the requests' threads (`prefetch`).
    private let advice = DispatchQueue(label: "wkfs.block-advice", qos: .utility)
    private let adviceQueued = Atomic<Int>(0)
    static let adviceLimit = 4

    init(cacheSize: Int) {
        capacity = cacheSize - min(cacheSize / 4, 64 << 20)
        storage = Mutex(Storage(groups: RecentlyUsed(limit: capacity)))
    }

    /// Data files kept open: a quarter of the process's descriptor limit (at most 4,096), so
    /// open cubes, requests and the kernel's connection always find one.
    static let openReaders: Int = {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 256 }
        return max(16, min(4096, Int(clamping: limit.rlim_cur) / 4))
    }()

    /// The open data file `index` of `mag` and its number in the cache's keys, or nil when it does
    /// not exist. A cached one is used only while the file on disk is still the same (same inode,
    /// size and modification time).
    func reader(_ mag: any MagStore, _ index: Vec3) throws -> (any DataFile)? {
        try current(mag, index)?.reader
    }

    /// The version of data file `index` of `mag` on disk now (nil: there is none), to read from
    /// later even after the file was replaced (`blocks(_:_:_:from:)`).
    func current(_ mag: any MagStore, _ index: Vec3) throws -> OpenedFile? {
        let path = mag.filePath(index)
        // Only a file that is not there reads as missing: one that cannot be looked at (a
        // symbolic link loop, a file where a directory belongs) is an error, not zeros.
        guard let status = try FileStatus.ofExisting(path, followLinks: true) else {
            storage.withLock { _ = $0.readers.removeValue(forKey: path) }
            return nil
        }
        if let known = storage.withLock({ $0.readers[path] }), known.reader.identity == status.identity { return known }
        guard let reader = try mag.openDataFile(index) else { return nil }
        return storage.withLock { s in
            if s.readers.count > Self.openReaders { s.readers.removeAll() }
            s.nextFileNumber += 1
            let opened = OpenedFile(reader: reader, number: s.nextFileNumber)
            s.readers[path] = opened
            return opened
        }
    }

    /// `pinned` while its file is still the one on disk or was replaced (renamed over: the pinned
    /// descriptor keeps the old content); the file on disk when it was changed in place (a raw
    /// file patched: the pinned descriptor reads the new bytes, so the old cached blocks must
    /// not be mixed with them) or when nothing was pinned.
    func following(_ pinned: OpenedFile?, _ mag: any MagStore, _ index: Vec3) throws -> OpenedFile? {
        guard let pinned else { return try current(mag, index) }
        guard let status = FileStatus.of(pinned.reader.path, followLinks: true) else { return pinned }
        let identity = pinned.reader.identity
        if identity == status.identity || identity.first != status.identity.first { return pinned }
        return try current(mag, index)
    }

    /// Blocks are cached in groups of consecutive block numbers of about 64 KiB: a dataset of
    /// 512-byte blocks would otherwise mean hundreds of thousands of entries (time in hashing and
    /// allocation, not in decoding). A group is stored together, so it is one read.
    /// A group spans at most 64 planes of the cube (or one block): where numbers run along z
    /// (Zarr3's chunk order), a larger group would make the first plane a program reads decode
    /// many layers of blocks at once (a whole 1024-voxel cube of 8-voxel chunks).
    static func groupSize(_ mag: any MagStore) -> Int {
        let planes = max(64, mag.blockShape.z)
        var size = 1
        while size * 2 * mag.blockBytes <= 64 << 10 && mag.blocksPerFile % (size * 2) == 0
            && layers(mag, below: size * 2) * mag.blockShape.z <= planes
        {
            size *= 2
        }
        return size
    }

    /// How many layers of blocks the block numbers `0..<count` reach into (the first block of a
    /// layer, at x = y = 0, has the smallest number of the layer in both formats' orders).
    private static func layers(_ mag: any MagStore, below count: Int) -> Int {
        var z = 1
        while z < mag.fileShape.z / mag.blockShape.z && mag.blockNumber(Vec3(0, 0, z)) < count { z += 1 }
        return z
    }

    /// Decoded blocks `numbers` of data file `index`, in that order; zeros when the file does not exist.
    func blocks(_ mag: any MagStore, _ index: Vec3, _ numbers: [Int]) throws -> [CachedBlock] {
        try blocks(mag, index, numbers, from: try current(mag, index))
    }

    /// Decoded blocks `numbers` of `opened`, a version of data file `index` (nil: none, zeros).
    func blocks(_ mag: any MagStore, _ index: Vec3, _ numbers: [Int], from opened: OpenedFile?) throws -> [CachedBlock] {
        let blockBytes = mag.blockBytes
        let size = Self.groupSize(mag)
        guard let (reader, file) = opened.map({ ($0.reader, $0.number) }) else {
            // A missing data file holds the mag's fill value (zeros unless a Zarr3 array says).
            if !mag.fillsWithZero {
                let fill = mag.fillBytes(voxels: size * blockBytes / mag.voxelBytes)
                return numbers.map { _ in CachedBlock(group: fill, offset: 0, count: blockBytes, isZero: false) }
            }
            let zero = zeroGroup(size * blockBytes)
            return numbers.map { _ in CachedBlock(group: zero, offset: 0, count: blockBytes, isZero: true) }
        }
        let wanted = Array(Set(numbers.map { $0 / size }))
        var groups: [Int: Entry] = [:]
        for (g, entry) in zip(wanted, lookup(file, wanted)) where entry != nil { groups[g] = entry }
        hits.wrappingAdd(groups.count, ordering: .relaxed)
        if groups.count < wanted.count {
            // One decoder per file at a time: the kernel reads ahead with several requests at
            // once, which would otherwise all decode the same blocks (time and, above all, memory).
            try decoding(reader.path).withLock {
                let unknown = wanted.filter { groups[$0] == nil }
                for (g, entry) in zip(unknown, lookup(file, unknown)) where entry != nil { groups[g] = entry }
                let missing = unknown.filter { groups[$0] == nil }
                let zero = Entry(bytes: zeroGroup(size * blockBytes), cost: Self.entryCost, isZero: true)
                misses.wrappingAdd(missing.count, ordering: .relaxed)
                let decode: @Sendable (Int) throws -> Entry = { i in
                    let numbers = (missing[i] * size)..<((missing[i] + 1) * size)
                    // Holes of sparse raw files are not read: reading them only fills zeros.
                    if reader.isHole(consecutive: numbers) { return zero }
                    let bytes = try reader.decode(consecutive: numbers)
                    self.decodedBytes.wrappingAdd(bytes.count, ordering: .relaxed)
                    // Blocks that decode to zeros (the background of a compressed mag) share one
                    // group: they cost no memory, and a reply fills them without copying.
                    if bytes.withUnsafeBytes(RegionCopy.isZero) { return zero }
                    return Entry(bytes: bytes, cost: bytes.count + Self.entryCost)
                }
                // A small cube's few groups decode faster than workers wake up.
                let small = missing.count * size * blockBytes <= 512 << 10
                let decoded = small ? try (0..<missing.count).map(decode) : try Parallel.map(missing.count, decode)
                zeroGroups.wrappingAdd(decoded.count { $0.isZero }, ordering: .relaxed)
                storage.withLock { s in
                    for (g, entry) in zip(missing, decoded) {
                        groups[g] = entry
                        s.groups.insert(Key(file: file, group: g), entry, cost: entry.cost)
                    }
                }
            }
        }
        return numbers.map { n in
            let entry = groups[n / size]!
            return CachedBlock(group: entry.bytes, offset: (n % size) * blockBytes, count: blockBytes, isZero: entry.isZero)
        }
    }

    /// Asks the kernel to start reading the stored bytes of the groups of `numbers` that are not
    /// cached, so a request that decodes many groups one after another does not wait on the disk
    /// for each (the first plane of a cube's block layer needs a whole layer of blocks).
    /// - Returns: whether groups were missing (false: nothing to ask for).
    @discardableResult
    func prefetch(_ mag: any MagStore, _ numbers: [Int], from opened: OpenedFile?) -> Bool {
        let size = Self.groupSize(mag)
        guard let (reader, file) = opened.map({ ($0.reader, $0.number) }) else { return false }
        let groups = Array(Set(numbers.map { $0 / size }))
        let missing = storage.withLock { s in groups.filter { !s.groups.contains(Key(file: file, group: $0)) } }
        guard missing.count > 1 else { return false }
        let stored = missing.filter { !reader.isHole(consecutive: ($0 * size)..<(($0 + 1) * size)) }
        // The advice is a system call per stored run (a z-layer of a Zarr3 shard is a thousand
        // runs: a tenth of a cold read's time); the request goes on decoding meanwhile. A walk
        // faster than the advice skips some, it does not queue them.
        guard adviceQueued.add(1, ordering: .relaxed).newValue <= Self.adviceLimit else {
            adviceQueued.subtract(1, ordering: .relaxed)
            return true
        }
        advice.async {
            reader.prefetch(stored.sorted().flatMap { ($0 * size)..<(($0 + 1) * size) })
            self.adviceQueued.subtract(1, ordering: .relaxed)
        }
        return true
    }

    /// What `.wkfs/stats` shows of the cache.
    struct Statistics {
        var capacity: Int, used: Int
        /// Groups found cached, groups decoded (or found to be holes), groups of zeros among those.
        var hits: Int, misses: Int, zeroGroups: Int
        var decodedBytes: Int
    }

    func statistics() -> Statistics {
        Statistics(
            capacity: capacity, used: storage.withLock { $0.groups.cost }, hits: hits.load(ordering: .relaxed),
            misses: misses.load(ordering: .relaxed), zeroGroups: zeroGroups.load(ordering: .relaxed),
            decodedBytes: decodedBytes.load(ordering: .relaxed))
    }

    /// The shared group of zeros of `count` bytes (holes, blocks of zeros).
    private func zeroGroup(_ count: Int) -> [UInt8] {
        storage.withLock { s in
            if let zero = s.zeroGroups[count] { return zero }
            let zero = [UInt8](repeating: 0, count: count)
            s.zeroGroups[count] = zero
            return zero
        }
    }

    /// The cached groups among `groups` (nil for the ones not cached), in that order.
    private func lookup(_ file: Int, _ groups: [Int]) -> [Entry?] {
        storage.withLock { s in
            groups.map { s.groups.find(Key(file: file, group: $0)) }
        }
    }

    /// The lock that serializes decoding of one file.
    private func decoding(_ path: String) -> NSLock {
        storage.withLock { s in
            if let lock = s.decodeLocks[path] { return lock }
            if s.decodeLocks.count > 4096 { s.decodeLocks.removeAll() }
            let lock = NSLock()
            s.decodeLocks[path] = lock
            return lock
        }
    }

    /// Forgets one data file (after it was rewritten): its next reader gets a new number, so its
    /// old blocks are never found again; they leave with their generation.
    func invalidate(_ path: String) {
        storage.withLock { s in s.readers[path] = nil }
    }
}

/// One opened version of a data file and its number in the cache's keys: its blocks stay
/// readable after the file on disk was replaced, for as long as someone keeps it.
struct OpenedFile: Sendable {
    let reader: any DataFile
    let number: Int
}

/// One decoded block inside a cached group of consecutive blocks.
struct CachedBlock: Sendable {
    let group: [UInt8]
    let offset: Int
    let count: Int
    /// Every byte is zero (a hole, a missing file, or blocks that decode to zeros).
    let isZero: Bool

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try group.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + count)])) }
    }

    /// A copy of the block's bytes.
    var bytes: [UInt8] { withUnsafeBytes { [UInt8]($0) } }
}
