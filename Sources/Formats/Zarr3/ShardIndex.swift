/// The index of a Zarr3 shard: where each inner chunk lies in the shard file, or that it is
/// empty (offset and length both 2^64-1). Entries are in C order of the chunk grid
/// `(c, x, y, z)`, z fastest, each two little-endian UInt64, optionally followed by a crc32c.
struct ShardIndex {
    let chunks: Vec3
    let entries: [UInt64]

    static let empty = UInt64.max

    static func byteCount(chunks: Vec3, checksum: Bool) -> Int { chunks.volume * 16 + (checksum ? 4 : 0) }

    /// Reads and checks the index of a shard file of `size` bytes.
    static func read(_ file: OpenFile, size: Int, chunks: Vec3, sharding: Zarr3Metadata.Sharding, path: String) throws -> ShardIndex {
        let count = byteCount(chunks: chunks, checksum: sharding.indexChecksum)
        guard size >= count else {
            throw FormatError(.corrupt, path: path, "the shard is \(size) bytes, shorter than its index (\(count) bytes): truncated")
        }
        let bytes = try file.read(at: sharding.indexAtEnd ? size - count : 0, count: count)
        return try parse(bytes, chunks: chunks, checksum: sharding.indexChecksum, path: path)
    }

    static func parse(_ bytes: [UInt8], chunks: Vec3, checksum: Bool, path: String) throws -> ShardIndex {
        let body = chunks.volume * 16
        if checksum {
            let want = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: body, as: UInt32.self).littleEndian }
            let got = bytes.withUnsafeBytes { Zarr3Compression.crc32c(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
            guard want == got else { throw FormatError(.corrupt, path: path, "the shard index's crc32c checksum does not match: corrupt or truncated") }
        }
        let entries = bytes.withUnsafeBytes { raw in
            (0..<(2 * chunks.volume)).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self).littleEndian }
        }
        return ShardIndex(chunks: chunks, entries: entries)
    }

    func number(_ local: Vec3) -> Int { (local.x * chunks.y + local.y) * chunks.z + local.z }

    /// The byte range of inner chunk `local`, nil when it is empty.
    /// - Throws: `FormatError` when the range lies outside the file.
    func range(of local: Vec3, fileSize: Int, path: String) throws -> Range<Int>? {
        let n = number(local)
        let offset = entries[2 * n], length = entries[2 * n + 1]
        if offset == Self.empty && length == Self.empty { return nil }
        guard offset <= UInt64(fileSize), length <= UInt64(fileSize) - offset else {
            throw FormatError(.corrupt, path: path, "the shard index places chunk \(local) at bytes \(offset)+\(length), past the file's end (\(fileSize) bytes): truncated or corrupt")
        }
        return Int(offset)..<Int(offset + length)
    }
}
