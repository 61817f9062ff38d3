import Synchronization
import WKW

/// Decoded blocks shared by every open cube, bounded in bytes, least recently used out first.
/// Also keeps the open data files (with their checked jump tables) that blocks come from.
final class BlockCache: Sendable {
    /// A block of one version of one file: a file replaced or changed by anyone (the mount or
    /// another program) has a new identity, so its old blocks are never served again.
    struct Key: Hashable, Sendable {
        var path: String
        var identity: [Int64]
        var block: Int
    }

    private struct Storage {
        var blocks: [Key: (bytes: [UInt8], tick: UInt64)] = [:]
        var bytes = 0
        var tick: UInt64 = 0
        var readers: [String: DataFileReader] = [:]
        var decodeLocks: [String: DecodeLock] = [:]
    }

    /// Bytes of decoded blocks kept between requests. The mount's `cache_size` also pays for the
    /// blocks and reply buffers of requests in flight (readahead keeps several going, about 60 MiB
    /// at most), so the kept part is that much smaller and the server stays near `cache_size`.
    let capacity: Int
    private let storage = Mutex(Storage())

    init(cacheSize: Int) { capacity = cacheSize - min(cacheSize / 4, 64 << 20) }

    /// The open data file `index` of `mag`, or nil when it does not exist. A cached one is used
    /// only while the file on disk is still the same (same inode, size and modification time).
    func reader(_ mag: MagDirectory, _ index: Vec3) throws -> DataFileReader? {
        let path = mag.filePath(index)
        guard let status = FileStatus.of(path, followLinks: true) else {
            storage.withLock { _ = $0.readers.removeValue(forKey: path) }
            return nil
        }
        if let known = storage.withLock({ $0.readers[path] }), known.identity == status.identity { return known }
        guard let reader = try DataFileReader.open(mag, index) else { return nil }
        storage.withLock { s in
            if s.readers.count > 4096 { s.readers.removeAll() }
            s.readers[path] = reader
        }
        return reader
    }

    /// Decoded blocks `numbers` of data file `index`; zeros when the file does not exist.
    func blocks(_ mag: MagDirectory, _ index: Vec3, _ numbers: [Int]) throws -> [Int: [UInt8]] {
        guard let reader = try reader(mag, index) else {
            let zero = [UInt8](repeating: 0, count: mag.header.blockByteCount)
            return Dictionary(uniqueKeysWithValues: numbers.map { ($0, zero) })
        }
        let path = mag.filePath(index)
        var (found, missing) = lookup(path, reader.identity, numbers)
        if missing.isEmpty { return found }
        // One decoder per file at a time: the kernel reads ahead with several requests at once,
        // which would otherwise all decode the same blocks (time and, above all, memory).
        return try decoding(path).withLock { _ in
            let again = lookup(path, reader.identity, missing)
            found.merge(again.found) { a, _ in a }
            missing = again.missing
            if missing.isEmpty { return found }
            let decoded = try reader.decode(missing)
            let incoming = missing.count * mag.header.blockByteCount
            storage.withLock { s in
                // Make room first, so the cache never holds more than its capacity.
                if s.bytes + incoming > capacity { Self.evict(&s, to: max(0, capacity * 3 / 4 - incoming)) }
                for (n, bytes) in zip(missing, decoded) {
                    found[n] = bytes
                    let key = Key(path: path, identity: reader.identity, block: n)
                    if s.blocks.updateValue((bytes, s.tick), forKey: key) == nil { s.bytes += bytes.count }
                }
            }
            return found
        }
    }

    /// The cached blocks among `numbers`, and the ones not cached.
    private func lookup(_ path: String, _ identity: [Int64], _ numbers: [Int]) -> (found: [Int: [UInt8]], missing: [Int]) {
        storage.withLock { s in
            s.tick += 1
            var found: [Int: [UInt8]] = [:]
            var missing: [Int] = []
            for n in numbers {
                let key = Key(path: path, identity: identity, block: n)
                if let entry = s.blocks[key] {
                    found[n] = entry.bytes
                    s.blocks[key]!.tick = s.tick
                } else {
                    missing.append(n)
                }
            }
            return (found, missing)
        }
    }

    /// The lock that serializes decoding of one file.
    private func decoding(_ path: String) -> DecodeLock {
        storage.withLock { s in
            if let lock = s.decodeLocks[path] { return lock }
            if s.decodeLocks.count > 4096 { s.decodeLocks.removeAll() }
            let lock = DecodeLock()
            s.decodeLocks[path] = lock
            return lock
        }
    }

    /// Forgets everything about one data file (after it was rewritten).
    func invalidate(_ path: String) {
        storage.withLock { s in
            s.readers[path] = nil
            for key in s.blocks.keys where key.path == path {
                s.bytes -= s.blocks.removeValue(forKey: key)!.bytes.count
            }
        }
    }

    private static func evict(_ s: inout Storage, to target: Int) {
        let oldestFirst = s.blocks.sorted { $0.value.tick < $1.value.tick }
        for (key, entry) in oldestFirst {
            if s.bytes <= target { break }
            s.blocks[key] = nil
            s.bytes -= entry.bytes.count
        }
    }
}

/// A lock held while one file's blocks are decoded.
final class DecodeLock: Sendable {
    private let mutex = Mutex(())

    func withLock<T>(_ body: (inout ()) throws -> T) rethrows -> T {
        try mutex.withLock { try body(&$0) }
    }
}
