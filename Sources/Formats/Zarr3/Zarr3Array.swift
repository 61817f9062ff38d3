import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One Zarr v3 array on disk as a mag: dimensions `(c, x, y, z)` (webknossos) or `(x, y, z)`,
/// chunks or shards in files named by the key encoding. Regions are read as WKW regions are:
/// `(z, y, x, c)` in C order, voxels never written read as the fill value.
public struct Zarr3Array: Sendable {
    public let path: String
    public let metadata: Zarr3Metadata
    /// Whether the first dimension is the channel one.
    let hasChannels: Bool
    public let channels: Int
    /// The array's size in voxels (x, y, z).
    public let size: Vec3
    /// The grid's chunk size in voxels: one file each (a shard when sharded).
    public let fileShape: Vec3
    /// The size of one independently encoded chunk (inner chunk when sharded).
    public let chunkShape: Vec3
    /// The codecs' transpose as a permutation of `(c, x, y, z)`.
    let order: [Int]

    /// 4 for `(c, x, y, z)` arrays, 3 for `(x, y, z)`.
    public var dimensionCount: Int { metadata.shape.count }
    public var voxelType: VoxelType { metadata.dataType }
    public var voxelBytes: Int { channels * metadata.dataType.size }
    public var chunkBytes: Int { chunkShape.x * chunkShape.y * chunkShape.z * voxelBytes }

    public static let metadataName = "zarr.json"

    /// Opens the array at `path` (a directory holding `zarr.json`).
    /// - Throws: `FormatError` naming `zarr.json` when it is missing, unreadable or not an array
    ///   wkfs can read.
    public static func open(_ path: String) throws -> Zarr3Array {
        let file = path + "/" + metadataName
        guard let status = FileStatus.of(file, followLinks: true) else {
            throw FormatError(.notFound, path: file, "no zarr.json: not a Zarr3 array")
        }
        guard status.isRegularFile else { throw FormatError(.invalidArgument, path: file, "not a regular file") }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
            throw FormatError(.io(errno: EIO), path: file, "cannot be read (\(error.localizedDescription))")
        }
        return try Zarr3Array(path: path, metadata: Zarr3Metadata.parse(data, path: file))
    }

    init(path: String, metadata: Zarr3Metadata) throws {
        let file = path + "/" + Self.metadataName
        func bad(_ reason: String) -> FormatError { FormatError(.corrupt, path: file, reason) }
        self.path = path
        self.metadata = metadata
        let inner = metadata.sharding?.innerShape ?? metadata.chunkShape
        switch metadata.shape.count {
        case 4:
            if let names = metadata.dimensionNames, !Self.named(names, ["c", "x", "y", "z"]) {
                throw bad("dimensions \(names.map { $0 ?? "null" }) are not (c, x, y, z)")
            }
            hasChannels = true
            channels = metadata.shape[0]
            guard channels > 0, metadata.chunkShape[0] == channels, inner[0] == channels else {
                throw bad("chunks must hold every channel (shape \(metadata.shape), chunks \(metadata.chunkShape))")
            }
            order = metadata.codecs.transpose ?? [0, 1, 2, 3]
        case 3:
            if let names = metadata.dimensionNames, !Self.named(names, ["x", "y", "z"]) {
                throw bad("dimensions \(names.map { $0 ?? "null" }) are not (x, y, z)")
            }
            hasChannels = false
            channels = 1
            order = [0] + (metadata.codecs.transpose ?? [0, 1, 2]).map { $0 + 1 }
        default:
            throw bad("\(metadata.shape.count) dimensions: wkfs reads (c, x, y, z) and (x, y, z) arrays")
        }
        let spatial = hasChannels ? 1 : 0
        size = Vec3(metadata.shape[spatial], metadata.shape[spatial + 1], metadata.shape[spatial + 2])
        fileShape = Vec3(metadata.chunkShape[spatial], metadata.chunkShape[spatial + 1], metadata.chunkShape[spatial + 2])
        chunkShape = Vec3(inner[spatial], inner[spatial + 1], inner[spatial + 2])
    }

    /// The path of the file of grid chunk (shard) `index`.
    public func filePath(_ index: Vec3) -> String {
        path + "/" + metadata.keyEncoding.key(hasChannels ? [0, index.x, index.y, index.z] : [index.x, index.y, index.z])
    }

    // MARK: Reading

    /// Reads a region into `destination`, which holds exactly its bytes.
    /// - Throws: `FormatError` naming the shard or chunk file when one is corrupt or truncated.
    public func read(_ box: Box, into destination: UnsafeMutableRawBufferPointer) throws {
        guard box.size.x >= 0, box.size.y >= 0, box.size.z >= 0, box.byteCount(voxelSize: voxelBytes) == destination.count else {
            throw FormatError(.invalidArgument, path: path, "region \(box) does not match a buffer of \(destination.count) bytes")
        }
        guard box.offset.x >= 0, box.offset.y >= 0, box.offset.z >= 0 else {
            throw FormatError(.invalidArgument, path: path, "region \(box) starts below 0")
        }
        guard !box.isEmpty, let base = destination.baseAddress else { return }
        // Planned first (files opened, shard indexes read), then every chunk decoded in
        // parallel: one large shard keeps every core busy, not one.
        let (planned, missing) = try plan(box)
        for part in missing { fill(part, of: box, base) }
        let address = SendableAddress(base)
        try Parallel.forEach(planned.count) { i in
            let read = planned[i]
            guard let file = read.file, let range = read.range else { return fill(read.part, of: box, address.pointer) }
            let bytes = try file.read(at: range.lowerBound, count: range.count)
            let decoded = try decodeChunk(bytes, path: read.path, what: read.what)
            decoded.withUnsafeBytes { chunk in
                RegionCopy.copy(read.part, voxelSize: voxelBytes, from: chunk.baseAddress!, layout: read.chunkBox, to: address.pointer, layout: box)
            }
        }
    }

    /// Asks the kernel to start fetching the stored chunks of `box` (advice only), so a caller
    /// reading a large region slab by slab keeps the disk busy while it decodes the slab before.
    public func prefetch(_ box: Box) throws {
        guard !box.isEmpty, box.offset.x >= 0, box.offset.y >= 0, box.offset.z >= 0 else { return }
        adviseWillNeed(try plan(box).reads)
    }

    /// Advises the kernel of the stored ranges of `reads`; neighbouring chunks are one range.
    private func adviseWillNeed(_ reads: [ChunkRead]) {
        var byFile: [ObjectIdentifier: (file: OpenFile, ranges: [Range<Int>])] = [:]
        for read in reads {
            guard let file = read.file, let range = read.range, !range.isEmpty else { continue }
            byFile[ObjectIdentifier(file), default: (file, [])].ranges.append(range)
        }
        for (file, ranges) in byFile.values {
            var merged: [Range<Int>] = []
            for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
                if let last = merged.last, range.lowerBound <= last.upperBound {
                    merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
                } else {
                    merged.append(range)
                }
            }
            for range in merged { file.willNeed(range) }
        }
    }

    /// One chunk's part of a region read: where it is stored (nil: the fill value).
    private struct ChunkRead: @unchecked Sendable {
        let file: OpenFile?
        let range: Range<Int>?
        let path: String
        /// The chunk's place in its shard; nil for an unsharded chunk file.
        let local: Vec3?
        var what: String { local.map { "chunk \($0) of the shard" } ?? "the chunk" }
        let chunkBox: Box
        let part: Box
    }

    /// The chunks to read for `box`, and the parts of `box` whose shard files are missing.
    private func plan(_ box: Box) throws -> (reads: [ChunkRead], missing: [Box]) {
        var reads: [ChunkRead] = []
        var missing: [Box] = []
        for index in box.cellRange(fileShape).positions {
            let fileBox = Box(offset: index * fileShape, size: fileShape)
            guard let part = fileBox.intersection(box) else { continue }
            let file = filePath(index)
            guard let opened = try OpenFile.openIfExists(file) else {
                missing.append(part)
                continue
            }
            let stored = try opened.size()
            guard let sharding = metadata.sharding else {
                reads.append(ChunkRead(file: opened, range: 0..<stored, path: file, local: nil, chunkBox: fileBox, part: part))
                continue
            }
            let shardIndex = try ShardIndex.read(opened, size: stored, chunks: fileShape.ceilDiv(chunkShape), sharding: sharding, path: file)
            let first = Box(offset: part.offset - fileBox.offset, size: part.size).cellRange(chunkShape)
            for local in first.positions {
                let chunkBox = Box(offset: fileBox.offset + local * chunkShape, size: chunkShape)
                guard let inner = chunkBox.intersection(box) else { continue }
                let range = try shardIndex.range(of: local, fileSize: stored, path: file)
                reads.append(ChunkRead(file: opened, range: range, path: file, local: local, chunkBox: chunkBox, part: inner))
            }
        }
        return (reads, missing)
    }

    /// Decodes one stored chunk into `destination` (one chunk, `(z, y, x, c)` C order). The
    /// chunks webknossos writes (transpose [3,2,1,0], little-endian, zstd or none, optionally a
    /// crc32c) decode straight into it; others through `decodeAnyChunk`.
    /// `what` names the chunk in an error (only built then: a read decodes thousands).
    func decodeChunk(_ stored: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, path file: String, what: @autoclosure () -> String) throws {
        let codecs = metadata.codecs.compression
        let direct = order == [3, 2, 1, 0] && (!metadata.codecs.bigEndian || metadata.dataType.size == 1)
            && Self.decodesDirectly(codecs)
        guard direct else {
            let decoded = try decodeAnyChunk([UInt8](stored), path: file, what: what())
            decoded.withUnsafeBytes { destination.copyMemory(from: $0) }
            return
        }
        var body = stored
        do {
            if codecs.last == .crc32c {
                guard body.count >= 4 else { throw Zarr3CodecError("too short for its crc32c checksum") }
                let want = body.loadUnaligned(fromByteOffset: body.count - 4, as: UInt32.self).littleEndian
                body = UnsafeRawBufferPointer(rebasing: body[0..<(body.count - 4)])
                guard Zarr3Compression.crc32c(body) == want else { throw Zarr3CodecError("crc32c checksum mismatch") }
            }
            if case .zstd = codecs.first {
                try Zarr3Compression.zstdDecompress(body, into: destination)
            } else {
                guard body.count == destination.count else {
                    throw Zarr3CodecError("holds \(body.count) bytes, expected \(destination.count)")
                }
                destination.copyMemory(from: body)
            }
        } catch let error as Zarr3CodecError {
            throw FormatError(.corrupt, path: file, "\(what()) does not decode: \(error.reason)")
        }
    }

    /// Whether dimension names are `expected`, unnamed (null) ones taken as what they must be.
    static func named(_ names: [String?], _ expected: [String]) -> Bool {
        names.count == expected.count && zip(names, expected).allSatisfy { $0 == nil || $0 == $1 }
    }

    /// Chains decoded straight into the chunk: nothing, `zstd`, `crc32c`, or `zstd` then `crc32c`.
    static func decodesDirectly(_ codecs: [Zarr3Metadata.ByteCodec]) -> Bool {
        switch codecs.count {
        case 0: return true
        case 1: if case .zstd = codecs[0] { return true } else { return codecs[0] == .crc32c }
        case 2: if case .zstd = codecs[0] { return codecs[1] == .crc32c } else { return false }
        default: return false
        }
    }

    /// Decodes one stored chunk into a new buffer, `(z, y, x, c)` C order.
    func decodeChunk(_ stored: [UInt8], path file: String, what: @autoclosure () -> String) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: chunkBytes) { buffer, count in
            try stored.withUnsafeBytes { try decodeChunk($0, into: UnsafeMutableRawBufferPointer(buffer), path: file, what: what()) }
            count = chunkBytes
        }
    }

    /// Decodes a chunk through every codec of any chain wkfs reads (blosc, gzip, big-endian, any transpose).
    private func decodeAnyChunk(_ stored: [UInt8], path file: String, what: String) throws -> [UInt8] {
        let expected = chunkBytes
        var bytes = stored
        do {
            let codecs = metadata.codecs.compression
            for (i, codec) in codecs.enumerated().reversed() {
                // What this codec decodes to: the chunk, plus the checksums of the crc32c codecs
                // before it in the chain (zarr-python writes `crc32c` then `zstd` as readily);
                // below another compressor (zstd of zstd), what the data says, within a bound.
                let before = codecs[..<i]
                let decodedSize: Zarr3Compression.DecodedSize =
                    before.allSatisfy { $0 == .crc32c }
                    ? .exactly(expected + 4 * before.count) : .atMost(2 * expected + 4 * before.count + (1 << 16))
                switch codec {
                case .crc32c:
                    guard bytes.count >= 4 else { throw Zarr3CodecError("too short for its crc32c checksum") }
                    let body = bytes.count - 4
                    let want = bytes[body..<bytes.count].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self).littleEndian }
                    let got = bytes.withUnsafeBytes { Zarr3Compression.crc32c(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }
                    guard want == got else { throw Zarr3CodecError("crc32c checksum mismatch") }
                    bytes.removeLast(4)
                case .zstd:
                    bytes = try bytes.withUnsafeBytes { try Zarr3Compression.zstdDecompress($0, size: decodedSize) }
                case .blosc:
                    bytes = try bytes.withUnsafeBytes { try Zarr3Compression.bloscDecompress($0, size: decodedSize) }
                case .gzip:
                    bytes = try bytes.withUnsafeBytes { try Zarr3Compression.gzipDecompress($0, size: decodedSize) }
                }
            }
        } catch let error as Zarr3CodecError {
            throw FormatError(.corrupt, path: file, "\(what) does not decode: \(error.reason)")
        }
        guard bytes.count == expected else {
            throw FormatError(.corrupt, path: file, "\(what) holds \(bytes.count) bytes, expected \(expected)")
        }
        if metadata.codecs.bigEndian && metadata.dataType.size > 1 { Self.swapBytes(&bytes, width: metadata.dataType.size) }
        return order == [3, 2, 1, 0] ? bytes : permute(bytes, toZYXC: true)
    }

    /// Reorders a chunk stored in transposed C order (`order`) to `(z, y, x, c)` C order, or back.
    func permute(_ bytes: [UInt8], toZYXC: Bool) -> [UInt8] {
        let extent = [channels, chunkShape.x, chunkShape.y, chunkShape.z]  // (c, x, y, z)
        let stored = order.map { extent[$0] }
        var storedStride = [Int](repeating: 1, count: 4)
        for k in stride(from: 2, through: 0, by: -1) { storedStride[k] = storedStride[k + 1] * stored[k + 1] }
        var stride = [Int](repeating: 0, count: 4)  // per (c, x, y, z)
        for k in 0..<4 { stride[order[k]] = storedStride[k] }
        let width = metadata.dataType.size
        var out = [UInt8](repeating: 0, count: bytes.count)
        bytes.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { target in
                var o = 0
                for z in 0..<extent[3] {
                    for y in 0..<extent[2] {
                        for x in 0..<extent[1] {
                            for c in 0..<extent[0] {
                                let s = (c * stride[0] + x * stride[1] + y * stride[2] + z * stride[3]) * width
                                if toZYXC {
                                    (target.baseAddress! + o).copyMemory(from: source.baseAddress! + s, byteCount: width)
                                } else {
                                    (target.baseAddress! + s).copyMemory(from: source.baseAddress! + o, byteCount: width)
                                }
                                o += width
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    static func swapBytes(_ bytes: inout [UInt8], width: Int) {
        bytes.withUnsafeMutableBytes { buffer in
            var i = 0
            while i + width <= buffer.count {
                var a = i, b = i + width - 1
                while a < b {
                    buffer.swapAt(a, b)
                    a += 1
                    b -= 1
                }
                i += width
            }
        }
    }

    /// Fills `part` of the region buffer of `box` with the fill value.
    private func fill(_ part: Box, of box: Box, _ destination: UnsafeMutableRawPointer) {
        if fillsWithZero {
            return RegionCopy.zero(part, voxelSize: voxelBytes, in: destination, layout: box)
        }
        fillBytes(voxels: part.voxelCount).withUnsafeBytes { pattern in
            RegionCopy.copy(part, voxelSize: voxelBytes, from: pattern.baseAddress!, layout: part, to: destination, layout: box)
        }
    }

    // MARK: Listing

    /// The grid chunks (shards) that have a file, as (x, y, z) grid positions; a key directory
    /// that cannot be listed or is something else goes to `problems`.
    public func dataFiles(problems: inout [FormatError]) -> [Vec3] {
        let spatial = hasChannels ? 4 : 3
        var found: [Vec3] = []
        func add(_ components: [String]) {
            let numbers = components.compactMap { Int($0) }
            guard numbers.count == spatial, numbers.count == components.count, numbers.allSatisfy({ $0 >= 0 }) else { return }
            if hasChannels && numbers[0] != 0 { return }
            let s = hasChannels ? 1 : 0
            found.append(Vec3(numbers[s], numbers[s + 1], numbers[s + 2]))
        }
        switch metadata.keyEncoding {
        case .default(let separator) where separator == "/":
            let keys = path + "/c"
            if FormatError.collect(&problems, path: keys, { try FileStatus.isDirectoryThere(keys) }) == true {
                walk(keys, depth: spatial, prefix: [], add, &problems)
            }
        case .v2(let separator) where separator == "/":
            walk(path, depth: spatial, prefix: [], add, &problems)
        case .default(let separator), .v2(let separator):
            let isDefault: Bool = if case .default = metadata.keyEncoding { true } else { false }
            for name in FormatError.collect(&problems, path: path, { try PathOps.listOrThrow(path) }) ?? [] {
                var parts = name.components(separatedBy: separator)
                if isDefault {
                    guard parts.first == "c" else { continue }
                    parts.removeFirst()
                }
                add(parts)
            }
        }
        return found.sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
    }

    private func walk(_ directory: String, depth: Int, prefix: [String], _ add: ([String]) -> Void, _ problems: inout [FormatError]) {
        // A directory removed since it was found (a concurrent delete) holds nothing.
        let names = FormatError.collect(&problems, path: directory) { try PathOps.listIfPresent(directory) } ?? []
        for name in names where Int(name) != nil {
            if depth == 1 {
                add(prefix + [name])
                continue
            }
            // Something else where chunk keys need a directory broke the array (a chunk lost);
            // nothing there is an entry removed since the listing.
            let child = directory + "/" + name
            if FormatError.collect(&problems, path: child, { try FileStatus.isDirectoryThere(child) }) == true {
                walk(child, depth: depth - 1, prefix: prefix + [name], add, &problems)
            }
        }
    }
}

extension Zarr3Array {
    /// Decodes every chunk of grid chunk (shard) `index`: its index, checksums and chunks.
    public func verifyFile(_ index: Vec3) throws {
        let file = filePath(index)
        guard let opened = try OpenFile.openIfExists(file) else { return }
        let stored = try opened.size()
        guard let sharding = metadata.sharding else {
            _ = try decodeChunk(try opened.read(at: 0, count: stored), path: file, what: "the chunk")
            return
        }
        let chunks = fileShape.ceilDiv(chunkShape)
        let shardIndex = try ShardIndex.read(opened, size: stored, chunks: chunks, sharding: sharding, path: file)
        for local in Box(offset: .zero, size: chunks).positions {
            guard let range = try shardIndex.range(of: local, fileSize: stored, path: file) else { continue }
            _ = try decodeChunk(try opened.read(at: range.lowerBound, count: range.count), path: file, what: "chunk \(local) of the shard")
        }
    }
}
