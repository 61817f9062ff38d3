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
    }

    let capacity: Int
    private let storage = Mutex(Storage())

    init(capacity: Int) { self.capacity = capacity }

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
        var found: [Int: [UInt8]] = [:]
        var missing: [Int] = []
        storage.withLock { s in
            s.tick += 1
            for n in numbers {
                let key = Key(path: path, identity: reader.identity, block: n)
                if let entry = s.blocks[key] {
                    found[n] = entry.bytes
                    s.blocks[key]!.tick = s.tick
                } else {
                    missing.append(n)
                }
            }
        }
        if missing.isEmpty { return found }
        let decoded = try reader.decode(missing)
        storage.withLock { s in
            for (n, bytes) in zip(missing, decoded) {
                found[n] = bytes
                let key = Key(path: path, identity: reader.identity, block: n)
                if s.blocks.updateValue((bytes, s.tick), forKey: key) == nil { s.bytes += bytes.count }
            }
            if s.bytes > capacity { Self.evict(&s, to: capacity * 3 / 4) }
        }
        return found
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
