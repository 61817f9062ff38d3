public import Foundation

/// A Zarr v3 array's `zarr.json`, as far as wkfs reads it: shape, element type, chunk grid, key
/// encoding, fill value and codec chain. Everything is checked when parsed; what wkfs cannot read
/// (an unknown codec, a non-regular grid) is refused with the reason, naming the file.
public struct Zarr3Metadata: Sendable {
    /// Shape in the array's own dimension order.
    public var shape: [Int]
    public var dataType: VoxelType
    /// The grid's chunk shape: whole shards when `sharding` is set.
    public var chunkShape: [Int]
    public var keyEncoding: KeyEncoding
    /// One element of the fill value, little-endian.
    public var fillValue: [UInt8]
    /// nil: none given; a nil name: that dimension is unnamed.
    public var dimensionNames: [String?]?
    /// The codecs of one grid chunk; with sharding they describe the shard's inner chunks.
    public var codecs: ChunkCodecs
    public var sharding: Sharding?
    /// The file as read, so that fields wkfs does not use survive a rewrite.
    public var json: JSONValue

    public enum KeyEncoding: Sendable, Equatable {
        /// `c/1/2/3` (separator `/`) or `c.1.2.3`.
        case `default`(separator: String)
        /// `1.2.3` or `1/2/3`.
        case v2(separator: String)

        func key(_ coordinates: [Int]) -> String {
            switch self {
            case .default(let separator): (["c"] + coordinates.map(String.init)).joined(separator: separator)
            case .v2(let separator): coordinates.map(String.init).joined(separator: separator)
            }
        }
    }

    /// Array-to-array, array-to-bytes and bytes-to-bytes codecs of a chunk, in encoding order.
    public struct ChunkCodecs: Sendable, Equatable {
        /// `transpose`'s order (a permutation of the dimensions); nil when there is none.
        public var transpose: [Int]?
        public var bigEndian: Bool
        public var compression: [ByteCodec]
    }

    public enum ByteCodec: Sendable, Equatable {
        case zstd(level: Int, checksum: Bool)
        case blosc(Blosc)
        case gzip(level: Int)
        case crc32c
    }

    /// The `blosc` codec's configuration: what a chunk is compressed with when written (a
    /// blosc buffer's own header says how to decompress it).
    public struct Blosc: Sendable, Equatable {
        public var compressor: String
        public var level: Int
        public var shuffle: Shuffle
        /// Bytes of one element, for shuffling; nil: the array's element size.
        public var typeSize: Int?
        /// Bytes per blosc block; 0: blosc chooses.
        public var blockSize: Int

        public enum Shuffle: String, Sendable {
            case noshuffle, shuffle, bitshuffle
        }

        static let compressors: Set<String> = ["blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd"]
    }

    public struct Sharding: Sendable, Equatable {
        /// Shape of the inner chunks, in the array's dimension order.
        public var innerShape: [Int]
        public var indexAtEnd: Bool
        /// The index ends with a crc32c checksum.
        public var indexChecksum: Bool
    }

    /// Parses `zarr.json` text; `path` names the file in errors.
    public static func parse(_ data: Data, path: String) throws -> Zarr3Metadata {
        func bad(_ reason: String) -> FormatError { FormatError(.corrupt, path: path, reason) }
        let json: JSONValue
        do { json = try JSONValue.parse(data) } catch { throw bad("not valid JSON (\(error))") }
        guard json["zarr_format"]?.intValue == 3 else { throw bad("'zarr_format' is not 3") }
        guard json["node_type"]?.stringValue == "array" else {
            throw bad("'node_type' is '\(json["node_type"]?.stringValue ?? "missing")', not 'array'")
        }
        guard let shape = json["shape"]?.arrayValue?.compactMap(\.intValue), !shape.isEmpty, shape.allSatisfy({ $0 >= 0 }),
            shape.count == json["shape"]?.arrayValue?.count
        else { throw bad("'shape' is not a list of sizes") }
        // What the specification says a reader must understand or stop: storage transformers,
        // and fields it does not define unless they say `"must_understand": false`.
        if let transformers = json["storage_transformers"]?.arrayValue, !transformers.isEmpty {
            throw bad("storage transformers are not supported")
        }
        for (key, value) in json.objectPairs ?? [] where !Self.knownFields.contains(key) && value["must_understand"] != .bool(false) {
            throw bad("field '\(key)' is not in the Zarr v3 specification and does not say \"must_understand\": false")
        }
        guard let typeName = json["data_type"]?.stringValue else { throw bad("'data_type' is missing") }
        guard let dataType = VoxelType(name: typeName) else { throw bad("data type '\(typeName)' is not supported") }
        guard json["chunk_grid"]?["name"]?.stringValue == "regular",
            let chunkShape = json["chunk_grid"]?["configuration"]?["chunk_shape"]?.arrayValue?.compactMap(\.intValue),
            chunkShape.count == shape.count, chunkShape.allSatisfy({ $0 > 0 })
        else { throw bad("'chunk_grid' is not a regular grid with one chunk size per dimension") }

        // Sizes stay far from overflow: every product below fits an Int with room to spare.
        guard shape.allSatisfy({ $0 <= Self.largestExtent }), chunkShape.allSatisfy({ $0 <= Self.largestExtent }) else {
            throw bad("'shape' or the chunk shape has an extent above 2^31")
        }
        let keyEncoding: KeyEncoding
        let encoding = json["chunk_key_encoding"]
        if let encoding, encoding.objectPairs == nil { throw bad("'chunk_key_encoding' is not an object") }
        let separator = encoding?["configuration"]?["separator"]?.stringValue
        switch encoding?["name"]?.stringValue {
        case "default", nil: keyEncoding = .default(separator: separator ?? "/")
        case "v2": keyEncoding = .v2(separator: separator ?? ".")
        case let other?: throw bad("chunk key encoding '\(other)' is not supported")
        }
        if let separator, separator != "/" && separator != "." { throw bad("chunk key separator '\(separator)' is not supported") }

        guard json["fill_value"] != nil else { throw bad("'fill_value' is missing") }
        let fill = try fillValue(json["fill_value"], dataType, bad)
        // A name may be null: that dimension is unnamed.
        let names: [String?]? = try json["dimension_names"]?.arrayValue?.map { name in
            if name == .null { return nil }
            guard let text = name.stringValue else { throw bad("'dimension_names' holds \(name.compact()), not a name or null") }
            return text
        }
        if let names, names.count != shape.count { throw bad("'dimension_names' has \(names.count) names for \(shape.count) dimensions") }
        guard let codecList = json["codecs"]?.arrayValue else { throw bad("'codecs' is missing") }

        var metadata = Zarr3Metadata(
            shape: shape, dataType: dataType, chunkShape: chunkShape, keyEncoding: keyEncoding, fillValue: fill,
            dimensionNames: names, codecs: ChunkCodecs(transpose: nil, bigEndian: false, compression: []), sharding: nil, json: json)
        if codecList.count == 1, codecList[0]["name"]?.stringValue == "sharding_indexed" {
            let configuration = codecList[0]["configuration"]
            guard let inner = configuration?["chunk_shape"]?.arrayValue?.compactMap(\.intValue), inner.count == shape.count,
                zip(inner, chunkShape).allSatisfy({ $0 > 0 && $1 % $0 == 0 })
            else { throw bad("the sharding codec's 'chunk_shape' does not divide the shard shape") }
            guard let innerCodecs = configuration?["codecs"]?.arrayValue else { throw bad("the sharding codec has no 'codecs'") }
            metadata.codecs = try chunkCodecs(innerCodecs, dimensions: shape.count, bad)
            let location = configuration?["index_location"]?.stringValue ?? "end"
            guard location == "end" || location == "start" else { throw bad("shard index location '\(location)' is not supported") }
            let index = try chunkCodecs(configuration?["index_codecs"]?.arrayValue ?? [], dimensions: shape.count + 1, bad)
            guard index.transpose == nil, !index.bigEndian, index.compression.allSatisfy({ $0 == .crc32c }), index.compression.count <= 1 else {
                throw bad("shard index codecs other than 'bytes' (little-endian) and 'crc32c' are not supported")
            }
            let perShard = zip(chunkShape, inner).reduce(1) { $0 * ($1.0 / $1.1) }
            guard perShard <= Self.mostChunksPerShard else {
                throw bad("\(perShard) chunks per shard: at most \(Self.mostChunksPerShard) are supported (the shard index alone would take \(perShard * 16 >> 20) MiB)")
            }
            metadata.sharding = Sharding(innerShape: inner, indexAtEnd: location == "end", indexChecksum: !index.compression.isEmpty)
        } else {
            metadata.codecs = try chunkCodecs(codecList, dimensions: shape.count, bad)
        }
        let chunkVoxels = (metadata.sharding?.innerShape ?? chunkShape).reduce(1, *)
        guard chunkVoxels <= Self.largestChunk / dataType.size else {
            throw bad("a chunk of \(chunkVoxels) voxels is larger than \(Self.largestChunk >> 20) MiB, more than wkfs decodes at once")
        }
        return metadata
    }

    /// The codec chain of a chunk, checked.
    private static func chunkCodecs(_ list: [JSONValue], dimensions: Int, _ bad: (String) -> FormatError) throws -> ChunkCodecs {
        var codecs = ChunkCodecs(transpose: nil, bigEndian: false, compression: [])
        var sawBytes = false
        for codec in list {
            let name = codec["name"]?.stringValue ?? "(unnamed)"
            let configuration = codec["configuration"]
            switch name {
            case "transpose":
                guard !sawBytes, codecs.transpose == nil,
                    let order = configuration?["order"]?.arrayValue?.compactMap(\.intValue),
                    order.sorted() == Array(0..<dimensions)
                else { throw bad("'transpose' needs an 'order' that is a permutation of the \(dimensions) dimensions") }
                codecs.transpose = order
            case "bytes":
                guard !sawBytes else { throw bad("two 'bytes' codecs") }
                sawBytes = true
                let endian: String
                switch configuration?["endian"] {
                case nil, .null?: endian = "little"  // optional for one-byte types
                case .string(let text)?: endian = text
                default: throw bad("'bytes' endian is not a string")
                }
                guard endian == "little" || endian == "big" else { throw bad("'bytes' endian '\(endian)' is unknown") }
                codecs.bigEndian = endian == "big"
            case "zstd":
                guard sawBytes else { throw bad("'zstd' before 'bytes'") }
                codecs.compression.append(.zstd(level: configuration?["level"]?.intValue ?? 0, checksum: configuration?["checksum"] == .bool(true)))
            case "blosc":
                guard sawBytes else { throw bad("'blosc' before 'bytes'") }
                codecs.compression.append(.blosc(try blosc(configuration, bad)))
            case "gzip":
                guard sawBytes else { throw bad("'gzip' before 'bytes'") }
                guard let level = configuration?["level"]?.intValue, (0...9).contains(level) else {
                    throw bad("'gzip' needs a 'level' from 0 to 9")
                }
                codecs.compression.append(.gzip(level: level))
            case "crc32c":
                guard sawBytes else { throw bad("'crc32c' before 'bytes'") }
                codecs.compression.append(.crc32c)
            case "sharding_indexed":
                throw bad("nested or combined 'sharding_indexed' codecs are not supported")
            default:
                throw bad("codec '\(name)' is not supported (wkfs reads transpose, bytes, zstd, blosc, gzip, crc32c, sharding_indexed)")
            }
        }
        guard sawBytes else { throw bad("no 'bytes' codec: the chunks' byte layout is not given") }
        return codecs
    }

    /// The `blosc` codec's configuration, checked as the specification gives it (zarr-python
    /// writes every field; a missing one takes zarr-python's default).
    private static func blosc(_ configuration: JSONValue?, _ bad: (String) -> FormatError) throws -> Blosc {
        var blosc = Blosc(compressor: "zstd", level: 5, shuffle: .noshuffle, typeSize: nil, blockSize: 0)
        if let value = configuration?["cname"] {
            guard let name = value.stringValue, Blosc.compressors.contains(name) else {
                throw bad("blosc 'cname' \(value.compact()) is not one of \(Blosc.compressors.sorted().joined(separator: ", "))")
            }
            blosc.compressor = name
        }
        if let value = configuration?["clevel"] {
            guard let level = value.intValue, (0...9).contains(level) else { throw bad("blosc 'clevel' \(value.compact()) is not 0 to 9") }
            blosc.level = level
        }
        if let value = configuration?["shuffle"] {
            guard let shuffle = value.stringValue.flatMap(Blosc.Shuffle.init) else {
                throw bad("blosc 'shuffle' \(value.compact()) is not noshuffle, shuffle or bitshuffle")
            }
            blosc.shuffle = shuffle
        }
        if let value = configuration?["typesize"], value != .null {
            guard let size = value.intValue, (1...255).contains(size) else { throw bad("blosc 'typesize' \(value.compact()) is not 1 to 255") }
            blosc.typeSize = size
        }
        if let value = configuration?["blocksize"] {
            guard let size = value.intValue, size >= 0 else { throw bad("blosc 'blocksize' \(value.compact()) is not a size") }
            blosc.blockSize = size
        }
        return blosc
    }

    /// Extents (array and chunk edges) above this are refused.
    static let largestExtent = 1 << 31
    /// The fields of an array's `zarr.json` in the specification.
    static let knownFields: Set<String> = [
        "zarr_format", "node_type", "shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs",
        "attributes", "storage_transformers", "dimension_names",
    ]

    /// Inner chunks per shard at most (the index takes 16 bytes each).
    public static let mostChunksPerShard = 1 << 21
    /// Bytes of one decoded chunk at most.
    static let largestChunk = 1 << 30

    /// The `fill_value` of `zarr.json` that holds exactly `element` (little-endian bytes of one
    /// element): a number, or for NaN and -0 the raw bits as hex, as the specification allows.
    static func fillValueJSON(_ element: [UInt8], _ type: VoxelType) -> JSONValue {
        var bits: UInt64 = 0
        for (i, byte) in element.prefix(8).enumerated() { bits |= UInt64(byte) << (8 * UInt64(i)) }
        let digits = String(bits, radix: 16)
        let hex = "0x" + String(repeating: "0", count: max(0, type.size * 2 - digits.count)) + digits
        switch type {
        case .float32, .float64:
            let value = type == .float32 ? Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits))) : Double(bitPattern: bits)
            if value.isNaN || (value == 0 && value.sign == .minus) { return .string(hex) }
            if value == .infinity { return .string("Infinity") }
            if value == -.infinity { return .string("-Infinity") }
            return .double(value)
        case .uint8, .uint16, .uint32: return .int(Int64(bits))
        case .uint64: return bits <= UInt64(Int64.max) ? .int(Int64(bits)) : .uint(bits)
        case .int8: return .int(Int64(Int8(truncatingIfNeeded: bits)))
        case .int16: return .int(Int64(Int16(truncatingIfNeeded: bits)))
        case .int32: return .int(Int64(Int32(truncatingIfNeeded: bits)))
        case .int64: return .int(Int64(bitPattern: bits))
        }
    }

    /// One element of the fill value as little-endian bytes: exactly the value, or an error.
    private static func fillValue(_ value: JSONValue?, _ type: VoxelType, _ bad: (String) -> FormatError) throws -> [UInt8] {
        func bytes<T>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
        func outOfRange() -> FormatError { bad("'fill_value' \(value.map { $0.compact() } ?? "") is not a \(type)") }
        if type.isFloat {
            let number: Double
            switch value {
            case .int(let i)?: number = Double(i)
            case .uint(let u)?: number = Double(u)
            case .double(let d)?: number = d
            case .string("NaN")?: number = .nan
            case .string("Infinity")?: number = .infinity
            case .string("-Infinity")?: number = -.infinity
            case .string(let text)? where text.hasPrefix("0x"):
                // The raw bits, as the specification allows.
                guard let bits = UInt64(text.dropFirst(2), radix: 16) else { throw outOfRange() }
                if type == .float32 {
                    guard bits <= UInt64(UInt32.max) else { throw outOfRange() }
                    return bytes(UInt32(bits).littleEndian)
                }
                return bytes(bits.littleEndian)
            default: throw outOfRange()
            }
            return type == .float32 ? bytes(Float(number).bitPattern.littleEndian) : bytes(number.bitPattern.littleEndian)
        }
        // Integers: exactly representable in the type, or refused.
        let signed: Int64?, unsigned: UInt64?
        switch value {
        case .int(let i)?: (signed, unsigned) = (i, UInt64(exactly: i))
        case .uint(let u)?: (signed, unsigned) = (nil, u)
        case .double(let d)? where d.rounded() == d: (signed, unsigned) = (Int64(exactly: d), UInt64(exactly: d))
        default: throw outOfRange()
        }
        switch type {
        case .uint8: guard let v = unsigned.flatMap({ UInt8(exactly: $0) }) else { throw outOfRange() }; return bytes(v)
        case .uint16: guard let v = unsigned.flatMap({ UInt16(exactly: $0) }) else { throw outOfRange() }; return bytes(v.littleEndian)
        case .uint32: guard let v = unsigned.flatMap({ UInt32(exactly: $0) }) else { throw outOfRange() }; return bytes(v.littleEndian)
        case .uint64: guard let v = unsigned else { throw outOfRange() }; return bytes(v.littleEndian)
        case .int8: guard let v = signed.flatMap({ Int8(exactly: $0) }) else { throw outOfRange() }; return bytes(v)
        case .int16: guard let v = signed.flatMap({ Int16(exactly: $0) }) else { throw outOfRange() }; return bytes(v.littleEndian)
        case .int32: guard let v = signed.flatMap({ Int32(exactly: $0) }) else { throw outOfRange() }; return bytes(v.littleEndian)
        case .int64: guard let v = signed else { throw outOfRange() }; return bytes(v.littleEndian)
        case .float32, .float64: throw outOfRange()
        }
    }
}
