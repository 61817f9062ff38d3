/// One version of one Zarr3 data file (a shard, or a single chunk when the array is not
/// sharded), open with its index checked, for reading chunks many times.
public final class Zarr3ShardFile: DataFile {
    let array: Zarr3Array
    let file: OpenFile
    /// The shard's index; nil for an unsharded chunk file.
    let index: ShardIndex?
    let size: Int
    public let path: String
    public let identity: [Int64]

    /// Opens data file `position` of `array`; nil when it does not exist.
    static func open(_ array: Zarr3Array, _ position: Vec3) throws -> Zarr3ShardFile? {
        let path = array.filePath(position)
        guard let file = try OpenFile.openIfExists(path) else { return nil }
        let size = try file.size()
        let index = try array.metadata.sharding.map { sharding in
            try ShardIndex.read(file, size: size, chunks: array.blocksPerFileEdge, sharding: sharding, path: path)
        }
        return Zarr3ShardFile(array: array, file: file, index: index, size: size, path: path, identity: try file.identity())
    }

    private init(array: Zarr3Array, file: OpenFile, index: ShardIndex?, size: Int, path: String, identity: [Int64]) {
        self.array = array
        self.file = file
        self.index = index
        self.size = size
        self.path = path
        self.identity = identity
    }

    /// The stored byte range of block `n`; nil when the chunk is empty.
    func range(_ n: Int) throws -> Range<Int>? {
        guard let index else { return 0..<size }
        return try index.range(of: array.chunkPosition(n), fileSize: size, path: path)
    }

    public func decode(consecutive numbers: Range<Int>) throws -> [UInt8] {
        let chunk = array.chunkBytes
        let ranges = try numbers.map { try range($0) }
        // Chunks stored back to back (as webknossos writes them) come in one read.
        let present = ranges.compactMap { $0 }
        let together = !present.isEmpty && zip(present, present.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }
        let span = together ? present.first!.lowerBound..<present.last!.upperBound : 0..<0
        let stored = together ? try file.read(at: span.lowerBound, count: span.count) : []
        let fill = ranges.contains(where: { $0 == nil }) ? array.fillBytes(voxels: array.chunkShape.volume) : []
        return try [UInt8](unsafeUninitializedCapacity: numbers.count * chunk) { buffer, initialized in
            let out = UnsafeMutableRawBufferPointer(buffer)
            for (i, range) in ranges.enumerated() {
                let slot = UnsafeMutableRawBufferPointer(rebasing: out[(i * chunk)..<((i + 1) * chunk)])
                let n = numbers.lowerBound + i
                guard let range else {
                    fill.withUnsafeBytes { slot.copyMemory(from: $0) }
                    continue
                }
                if together {
                    try stored.withUnsafeBytes { all in
                        let part = UnsafeRawBufferPointer(rebasing: all[(range.lowerBound - span.lowerBound)..<(range.upperBound - span.lowerBound)])
                        try array.decodeChunk(part, into: slot, path: path, what: "chunk \(array.chunkPosition(n)) of the shard")
                    }
                } else {
                    let bytes = try file.read(at: range.lowerBound, count: range.count)
                    try bytes.withUnsafeBytes { try array.decodeChunk($0, into: slot, path: path, what: "chunk \(array.chunkPosition(n)) of the shard") }
                }
            }
            initialized = numbers.count * chunk
        }
    }

    public func isHole(consecutive numbers: Range<Int>) -> Bool {
        guard index != nil, array.fillsWithZero else { return false }
        return numbers.allSatisfy { (try? range($0)) == .some(nil) }
    }

    public func prefetch(_ numbers: [Int]) {
        // Chunks stored back to back are asked for in one call.
        var run: Range<Int>?
        for n in numbers {
            guard let range = try? range(n), !range.isEmpty else { continue }
            if let current = run, current.upperBound == range.lowerBound {
                run = current.lowerBound..<range.upperBound
            } else {
                if let current = run { file.willNeed(current) }
                run = range
            }
        }
        if let current = run { file.willNeed(current) }
    }
}

extension Zarr3ShardFile {
    public func storedBytes(ofBlock n: Int) throws -> [UInt8]? {
        guard let range = try range(n) else { return nil }
        return try file.read(at: range.lowerBound, count: range.count)
    }
}
