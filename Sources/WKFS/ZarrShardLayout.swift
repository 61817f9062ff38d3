import Synchronization
import Formats

/// One data file of any format shown as an uncompressed Zarr3 shard: its blocks as the inner
/// chunks (transpose [3,2,1,0] + bytes: a decoded block's own bytes), back to back in the
/// index's order, then the index (16 bytes per chunk and a crc32c), which depends only on the
/// chunk count and size: computed, never read. A file of one block is a plain chunk.
struct ZarrShardLayout {
    let chunks: Vec3
    let chunkBytes: Int
    var count: Int { chunks.volume }
    var sharded: Bool { count > 1 }
    var dataBytes: Int { count * chunkBytes }
    var fileBytes: Int { dataBytes + (sharded ? count * 16 + 4 : 0) }

    init(_ store: any MagStore) {
        chunks = store.blocksPerFileEdge
        chunkBytes = store.blockBytes
    }

    /// Fills `destination` with the shard's bytes from `offset` on; returns how many (short at the end).
    func read(
        _ store: any MagStore, _ index: Vec3, offset: Int, into destination: UnsafeMutableRawBufferPointer, cache: BlockCache
    ) throws -> Int {
        let end = min(fileBytes, offset + destination.count)
        guard offset < end, let base = destination.baseAddress else { return 0 }
        var position = offset
        if position < dataBytes {
            let first = position / chunkBytes
            let last = (min(end, dataBytes) - 1) / chunkBytes
            let numbers = (first...last).map { store.blockNumber(local($0)) }
            let blocks = try cache.blocks(store, index, numbers)
            for (i, block) in zip(first...last, blocks) {
                let start = max(position, i * chunkBytes)
                let stop = min(end, (i + 1) * chunkBytes)
                guard start < stop else { continue }
                block.withUnsafeBytes { bytes in
                    (base + (start - offset)).copyMemory(from: bytes.baseAddress! + (start - i * chunkBytes), byteCount: stop - start)
                }
                position = stop
            }
        }
        if position < end {
            let index = Self.index(count: count, chunkBytes: chunkBytes)
            index.withUnsafeBytes { bytes in
                (base + (position - offset)).copyMemory(from: bytes.baseAddress! + (position - dataBytes), byteCount: end - position)
            }
        }
        return end - offset
    }

    /// Chunk `n`'s position in the shard's chunk grid: C order, z fastest.
    func local(_ n: Int) -> Vec3 { Vec3(n / (chunks.y * chunks.z), n / chunks.z % chunks.y, n % chunks.z) }

    /// The index of a shard of `count` chunks of `chunkBytes` each, all stored in order; made
    /// once per shape (a default shard's is 512 KiB).
    static func index(count: Int, chunkBytes: Int) -> [UInt8] {
        let key = [count, chunkBytes]
        if let known = indexes.withLock({ $0[key] }) { return known }
        let entries = (0..<count).flatMap { [UInt64($0 * chunkBytes), UInt64(chunkBytes)] }
        let index = Zarr3Array.encodeIndex(entries, checksum: true)
        indexes.withLock { $0[key] = index }
        return index
    }

    private static let indexes = Mutex<[[Int]: [UInt8]]>([:])
}
