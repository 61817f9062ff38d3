/// A Zarr3 array as a `MagStore`: chunks are blocks, shards data files.
extension Zarr3Array: MagStore {
    public var format: DataFormat { .zarr3 }
    public var blockShape: Vec3 { chunkShape }
    public var compressionName: String {
        let names = metadata.codecs.compression.compactMap { codec -> String? in
            switch codec {
            case .zstd(let level, _): "zstd level \(level)"
            case .blosc(let b): "blosc \(b.compressor) level \(b.level) \(b.shuffle.rawValue)"
            case .gzip(let level): "gzip level \(level)"
            case .crc32c: nil
            }
        }
        return names.isEmpty ? "raw" : names.joined(separator: "+")
    }
    public var isCompressed: Bool { compressionName != "raw" }
    public var fillValue: [UInt8] { metadata.fillValue }
    /// C order of the shard's chunk grid, z fastest (the index's order).
    public func blockNumber(_ position: Vec3) -> Int {
        let n = blocksPerFileEdge
        return (position.x * n.y + position.y) * n.z + position.z
    }

    /// The position of chunk `n` in the shard's chunk grid (inverse of `blockNumber`).
    public func chunkPosition(_ n: Int) -> Vec3 {
        let grid = blocksPerFileEdge
        return Vec3(n / (grid.y * grid.z), n / grid.z % grid.y, n % grid.z)
    }
    public func openDataFile(_ index: Vec3) throws -> (any DataFile)? { try Zarr3ShardFile.open(self, index) }

    public func describeLayout() -> [(String, JSONValue)] {
        func ints(_ values: [Int]) -> JSONValue { .array(values.map { .int(Int64($0)) }) }
        return [("chunkShape", ints(blockShape.array)), ("shardShape", ints(fileShape.array)), ("compression", .string(compressionName))]
    }
}

extension Zarr3Array: BlockWritableStore {
    public func writeRegion(_ box: Box, from source: UnsafeRawBufferPointer) throws { try write(box, from: source) }
    public func encodeBlock(_ decoded: [UInt8]) throws -> [UInt8] { try encodeChunk(decoded, path: path) }
    public func decodeBlock(_ encoded: [UInt8], origin: String) throws -> [UInt8] {
        try decodeChunk(encoded, path: origin, what: "a chunk")
    }
}
