#if canImport(Glibc)
    import Glibc
#endif

/// New Zarr3 arrays, written as webknossos 4.3 writes them: `(c, x, y, z)`, one `sharding_indexed`
/// codec (unless a shard is one chunk) whose chunks are `transpose [3,2,1,0]` + `bytes` (+ `zstd`
/// level 5 with checksum), index `bytes` + `crc32c` at the end; `zarr.json` as tensorstore writes
/// it (compact, keys sorted).
extension Zarr3Array {
    /// Checks a chunk and shard shape pair as webknossos does; the reason when it is not usable.
    public static func shapeProblem(chunk: Vec3, shard: Vec3) -> String? {
        func powerOfTwo(_ v: Int) -> Bool { v > 0 && v & (v - 1) == 0 }
        if !chunk.array.allSatisfy(powerOfTwo) { return "chunk shape \(chunk) is not a power of two per edge" }
        if !shard.array.allSatisfy(powerOfTwo) { return "shard shape \(shard) is not a power of two per edge" }
        if shard.x % chunk.x != 0 || shard.y % chunk.y != 0 || shard.z % chunk.z != 0 {
            return "shard shape \(shard) is not a multiple of the chunk shape \(chunk)"
        }
        if shard.array.contains(where: { $0 > 1 << 16 }) { return "shard shape \(shard) is above 65536 per edge" }
        let perShard = (shard.x / chunk.x) * (shard.y / chunk.y) * (shard.z / chunk.z)
        if perShard > Zarr3Metadata.mostChunksPerShard {
            return "\(perShard) chunks per shard (shard \(shard), chunks \(chunk)): at most \(Zarr3Metadata.mostChunksPerShard); use larger chunks or smaller shards"
        }
        return nil
    }

    /// The `zarr.json` of a new array.
    /// `fill`: one element of the fill value (little-endian bytes); nil: zero.
    public static func metadataJSON(voxelType: VoxelType, channels: Int, size: Vec3, chunk: Vec3, shard: Vec3, compress: Bool, fill: [UInt8]? = nil) -> JSONValue {
        func shape(_ v: Vec3) -> JSONValue { .array(([channels] + v.array).map { .int(Int64($0)) }) }
        var inner: [JSONValue] = [
            .object([("configuration", .object([("order", .array([3, 2, 1, 0].map { .int($0) }))])), ("name", .string("transpose"))]),
            voxelType.size == 1
                ? .object([("name", .string("bytes"))])
                : .object([("configuration", .object([("endian", .string("little"))])), ("name", .string("bytes"))]),
        ]
        if compress {
            inner.append(.object([("configuration", .object([("checksum", .bool(true)), ("level", .int(5))])), ("name", .string("zstd"))]))
        }
        let codecs: [JSONValue] =
            chunk == shard
            ? inner
            : [
                .object([
                    (
                        "configuration",
                        .object([
                            ("chunk_shape", shape(chunk)),
                            ("codecs", .array(inner)),
                            (
                                "index_codecs",
                                .array([
                                    .object([("configuration", .object([("endian", .string("little"))])), ("name", .string("bytes"))]),
                                    .object([("name", .string("crc32c"))]),
                                ])
                            ),
                        ])
                    ),
                    ("name", .string("sharding_indexed")),
                ])
            ]
        return .object([
            ("chunk_grid", .object([("configuration", .object([("chunk_shape", shape(shard))])), ("name", .string("regular"))])),
            ("chunk_key_encoding", .object([("name", .string("default"))])),
            ("codecs", .array(codecs)),
            ("data_type", .string(voxelType.name)),
            ("dimension_names", .array(["c", "x", "y", "z"].map { .string($0) })),
            ("fill_value", fill.map { Zarr3Metadata.fillValueJSON($0, voxelType) } ?? (voxelType.isFloat ? .double(0) : .int(0))),
            ("node_type", .string("array")),
            ("shape", shape(size)),
            ("zarr_format", .int(3)),
        ])
    }

    /// `end` rounded up to whole shards: the shape webknossos gives an array holding data up to `end`.
    public static func shape(covering end: Vec3, shard: Vec3) -> Vec3 {
        Vec3.max(end, .zero).ceilDiv(shard) * shard
    }

    /// Creates the array directory at `path` (which must not exist) with its `zarr.json`.
    /// - Throws: `FormatError(.alreadyExists)` when `path` exists; on any failure nothing is left.
    public static func create(
        _ path: String, voxelType: VoxelType, channels: Int, chunk: Vec3, shard: Vec3, compress: Bool, size: Vec3, fill: [UInt8]? = nil
    ) throws -> Zarr3Array {
        if let problem = shapeProblem(chunk: chunk, shard: shard) { throw FormatError(.invalidArgument, path: path, problem) }
        let json = metadataJSON(
            voxelType: voxelType, channels: channels, size: shape(covering: size, shard: shard), chunk: chunk, shard: shard, compress: compress,
            fill: fill)
        return try create(path, json)
    }

    /// Creates an array at `path` (which must not exist) exactly like `template` (chunk grid,
    /// inner chunks, codecs, key encoding, fill value, dimension names) but for its shape, whole
    /// shards covering `size`, and without its `attributes` (they describe that array).
    public static func create(_ path: String, like template: Zarr3Array, size: Vec3) throws -> Zarr3Array {
        var pairs = try template.metadataFields(shape: shape(covering: size, shard: template.fileShape))
        pairs.removeAll { $0.0 == "attributes" }
        return try create(path, .object(pairs))
    }

    /// The array an interrupted run made at `path` when it is like `template` (`create(_:like:size:)`),
    /// else a new one like it.
    public static func openOrCreate(_ path: String, like template: Zarr3Array, size: Vec3) throws -> Zarr3Array {
        if let existing = try? open(path) {
            guard existing.isLike(template) else {
                throw FormatError(
                    .alreadyExists, path: path,
                    "holds an array unlike the one to make here (chunks, shards or codecs differ: made by a run with other options?)")
            }
            return existing
        }
        return try create(path, like: template, size: size)
    }

    /// Whether this array's `zarr.json` is `other`'s but for the shape and the attributes.
    func isLike(_ other: Zarr3Array) -> Bool {
        func rest(_ json: JSONValue) -> JSONValue? {
            json.objectPairs.map { .object($0.filter { $0.0 != "shape" && $0.0 != "attributes" }) }
        }
        guard let mine = rest(metadata.json) else { return false }
        return mine == rest(other.metadata.json)
    }

    private static func create(_ path: String, _ json: JSONValue) throws -> Zarr3Array {
        try PathOps.makeDirectories(PathOps.dirname(path))
        // Exclusive: two creators never share a directory; a failed step removes it again.
        guard mkdir(path, 0o777) == 0 else {
            let code = errno
            if code == EEXIST { throw FormatError(.alreadyExists, path: path, "already exists") }
            throw FormatError(.io(errno: code), path: path, "cannot create the directory: \(String(cString: strerror(code)))")
        }
        PathOps.inheritOwnership(path)
        do {
            try AtomicFile.write(path + "/" + metadataName, Array(json.compact().utf8))
            return try open(path)
        } catch {
            PathOps.remove(path + "/" + metadataName)
            rmdir(path)
            throw error
        }
    }

    /// Grows the array's shape to whole shards covering `end` (x, y, z), as webknossos does when
    /// the layer's bounding box grows (readers such as tensorstore read only inside the shape);
    /// `zarr.json` is replaced atomically, its other fields kept. It never shrinks: data outside a
    /// smaller shape would vanish for those readers. Re-reads `zarr.json` under the array's
    /// metadata lock, so concurrent growths all stay.
    public static func growShape(of path: String, toCover end: Vec3) throws {
        let before = try open(path)
        guard grownShape(before, toCover: end) != before.size else { return }
        let lock = try before.lockMetadata()
        defer { lock.unlock() }
        let current = try open(path)
        let target = grownShape(current, toCover: end)
        guard target != current.size else { return }
        try AtomicFile.write(path + "/" + metadataName, Array(JSONValue.object(try current.metadataFields(shape: target)).compact().utf8))
    }

    /// The fields of this array's `zarr.json` with the shape set to `spatial` (x, y, z; the
    /// channel count stays), the others as they are, in their order.
    func metadataFields(shape spatial: Vec3) throws -> [(String, JSONValue)] {
        guard case .object(var pairs) = metadata.json, let i = pairs.firstIndex(where: { $0.0 == "shape" }) else {
            throw FormatError(.corrupt, path: path + "/" + Self.metadataName, "no 'shape' to change")
        }
        let shape = hasChannels ? [channels] + spatial.array : spatial.array
        pairs[i].1 = .array(shape.map { .int(Int64($0)) })
        return pairs
    }

    /// The shape `array` grows to so that it covers `end`: only the extents `end` passes grow, to
    /// whole shards. An extent already covering `end` stays, even when it is not whole shards (an
    /// array zarr-python shrank keeps the old voxels past its shape in its edge chunks; growing
    /// over them would show them again).
    static func grownShape(_ array: Zarr3Array, toCover end: Vec3) -> Vec3 {
        let covering = shape(covering: end, shard: array.fileShape)
        let size = array.size
        return Vec3(
            end.x > size.x ? covering.x : size.x, end.y > size.y ? covering.y : size.y, end.z > size.z ? covering.z : size.z)
    }

    /// The `attributes` of `zarr.json` (nil: none).
    var attributes: JSONValue? {
        guard case .object(let pairs) = metadata.json else { return nil }
        return pairs.first(where: { $0.0 == "attributes" })?.1
    }

    /// Sets the `attributes` of `zarr.json` (nil: removes them), its other fields kept; atomic.
    func replaceAttributes(with attributes: JSONValue?) throws {
        let lock = try lockMetadata()
        defer { lock.unlock() }
        let current = try Self.open(path)
        guard case .object(var pairs) = current.metadata.json else {
            throw FormatError(.corrupt, path: path + "/" + Self.metadataName, "not a JSON object")
        }
        pairs.removeAll { $0.0 == "attributes" }
        if let attributes { pairs.append(("attributes", attributes)) }
        pairs.sort { $0.0 < $1.0 }
        try AtomicFile.write(path + "/" + Self.metadataName, Array(JSONValue.object(pairs).compact().utf8))
    }

    /// The lock of `zarr.json` changes: a byte of the lock file apart from the data files' bytes.
    func lockMetadata() throws -> MagLock {
        let fd = Glibc.open(lockFilePath, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if fd >= 0 { close(fd) }
        return MagLock(try FileLock.lock(lockFilePath, ranges: [(0, 1)], exclusive: true)!)
    }
}
