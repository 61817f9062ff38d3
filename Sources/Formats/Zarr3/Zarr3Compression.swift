import CBlosc
import CISAL
import CZlib
import CZstd
import Synchronization

/// The C libraries behind Zarr3's byte codecs: zstd, blosc, gzip (zlib) and crc32c. The only
/// file of the Zarr3 format that calls C.
enum Zarr3Compression {
    /// How many bytes a codec decodes to: exactly the chunk (and its checksums), or, below
    /// another compressor of the chain, what the data says up to a bound.
    enum DecodedSize {
        case exactly(Int)
        case atMost(Int)

        var capacity: Int {
            switch self {
            case .exactly(let n), .atMost(let n): n
            }
        }

        /// Why `count` bytes are not what is expected; nil when they are.
        func problem(_ count: Int) -> String? {
            switch self {
            case .exactly(let n): count == n ? nil : "holds \(count) bytes, expected \(n)"
            case .atMost(let n): count <= n ? nil : "holds \(count) bytes, more than the \(n) its chunk can take"
            }
        }
    }

    /// Decompresses a zstd frame (which must say its size unless `size` is exact).
    static func zstdDecompress(_ input: UnsafeRawBufferPointer, size: DecodedSize) throws(Zarr3CodecError) -> [UInt8] {
        let declared = try zstdContentSize(input)
        if let declared, let problem = size.problem(declared) { throw Zarr3CodecError("zstd data \(problem)") }
        let capacity: Int
        switch size {
        case .exactly(let n): capacity = n
        case .atMost:
            guard let declared else { throw Zarr3CodecError("zstd frame does not say its size, and a compressor follows in the chain") }
            capacity = declared
        }
        var failure: String?
        let output = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
            let n = ZSTD_decompress(buffer.baseAddress, capacity, input.baseAddress, input.count)
            if ZSTD_isError(n) != 0 {
                failure = String(cString: ZSTD_getErrorName(n))
                count = 0
            } else if n != capacity {
                failure = "frame holds \(n) bytes, expected \(capacity)"
                count = 0
            } else {
                count = n
            }
        }
        if let failure { throw Zarr3CodecError("zstd: \(failure)") }
        return output
    }

    /// What the zstd frames of `input` (one, or several in a row) decode to together; nil when a
    /// frame does not say.
    private static func zstdContentSize(_ input: UnsafeRawBufferPointer) throws(Zarr3CodecError) -> Int? {
        var offset = 0, total = 0
        while offset < input.count {
            let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
            let size = ZSTD_getFrameContentSize(rest.baseAddress, rest.count)
            if size == ZSTD_CONTENTSIZE_ERROR { throw Zarr3CodecError("zstd: not a zstd frame (or a truncated one)") }
            if size == ZSTD_CONTENTSIZE_UNKNOWN { return nil }
            let length = ZSTD_findFrameCompressedSize(rest.baseAddress, rest.count)
            if ZSTD_isError(length) != 0 { throw Zarr3CodecError("zstd: \(String(cString: ZSTD_getErrorName(length)))") }
            guard size <= UInt64(Int.max - total) else { throw Zarr3CodecError("zstd: frames say they hold more bytes than can be") }
            total += Int(size)
            offset += length
        }
        return total
    }

    /// Decompresses a zstd frame into `destination`, which it must fill exactly. Uses a pooled
    /// decompression context: making one per chunk cost more than decoding a 32 KiB chunk.
    static func zstdDecompress(_ input: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws(Zarr3CodecError) {
        let context = DecompressionContexts.take()
        defer { DecompressionContexts.give(context) }
        let n = ZSTD_decompressDCtx(context.pointer, destination.baseAddress, destination.count, input.baseAddress, input.count)
        if ZSTD_isError(n) != 0 { throw Zarr3CodecError("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        if n != destination.count { throw Zarr3CodecError("zstd frame holds \(n) bytes, expected \(destination.count)") }
    }

    /// Idle zstd decompression contexts, reused across chunks and threads.
    private enum DecompressionContexts {
        struct Context: @unchecked Sendable { let pointer: OpaquePointer }
        static let idle = Mutex<[Context]>([])

        static func take() -> Context {
            if let context = idle.withLock({ $0.popLast() }) { return context }
            return Context(pointer: ZSTD_createDCtx())
        }

        static func give(_ context: Context) {
            let kept = idle.withLock { pool -> Bool in
                guard pool.count < 64 else { return false }
                pool.append(context)
                return true
            }
            if !kept { ZSTD_freeDCtx(context.pointer) }
        }
    }

    /// Compresses with zstd at `level`, with or without the frame's content checksum.
    static func zstdCompress(_ input: UnsafeRawBufferPointer, level: Int, checksum: Bool) throws(Zarr3CodecError) -> [UInt8] {
        guard let context = ZSTD_createCCtx() else { throw Zarr3CodecError("zstd: out of memory") }
        defer { ZSTD_freeCCtx(context) }
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, checksum ? 1 : 0)
        let bound = ZSTD_compressBound(input.count)
        var failure: String?
        let output = [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
            let n = ZSTD_compress2(context, buffer.baseAddress, bound, input.baseAddress, input.count)
            if ZSTD_isError(n) != 0 {
                failure = String(cString: ZSTD_getErrorName(n))
                count = 0
            } else {
                count = n
            }
        }
        if let failure { throw Zarr3CodecError("zstd: \(failure)") }
        return output
    }

    /// Decompresses a blosc buffer, which says its size.
    static func bloscDecompress(_ input: UnsafeRawBufferPointer, size: DecodedSize) throws(Zarr3CodecError) -> [UInt8] {
        var nbytes = 0, cbytes = 0, blocksize = 0
        guard input.count >= 16 else { throw Zarr3CodecError("blosc: buffer of \(input.count) bytes is too short") }
        blosc_cbuffer_sizes(input.baseAddress, &nbytes, &cbytes, &blocksize)
        if let problem = size.problem(nbytes) { throw Zarr3CodecError("blosc buffer \(problem)") }
        guard cbytes <= input.count else {
            throw Zarr3CodecError("blosc buffer says it is \(cbytes) bytes stored, but \(input.count) are there")
        }
        var failed = false
        let output = [UInt8](unsafeUninitializedCapacity: nbytes) { buffer, count in
            // The context variant: thread-safe without blosc_init, one thread.
            let n = blosc_decompress_ctx(input.baseAddress, buffer.baseAddress, nbytes, 1)
            failed = n != Int32(nbytes)
            count = failed ? 0 : nbytes
        }
        if failed { throw Zarr3CodecError("blosc: the chunk does not decompress") }
        return output
    }

    /// Compresses with blosc as `settings` say; `elementSize` is the shuffle's type size when the
    /// settings give none.
    static func bloscCompress(
        _ input: UnsafeRawBufferPointer, _ settings: Zarr3Metadata.Blosc, elementSize: Int
    ) throws(Zarr3CodecError) -> [UInt8] {
        guard bloscCompresses(with: settings.compressor) else {
            throw Zarr3CodecError("blosc: this machine's blosc library has no '\(settings.compressor)' compressor")
        }
        let shuffle: Int32 = switch settings.shuffle {
        case .noshuffle: BLOSC_NOSHUFFLE
        case .shuffle: BLOSC_SHUFFLE
        case .bitshuffle: BLOSC_BITSHUFFLE
        }
        guard input.count <= Int(Int32.max) - Int(BLOSC_MAX_OVERHEAD) else { throw Zarr3CodecError("blosc: a chunk of \(input.count) bytes is too large") }
        let capacity = input.count + Int(BLOSC_MAX_OVERHEAD)
        var written: Int32 = 0
        let output = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
            // The context variant: thread-safe without blosc_init, one thread.
            written = blosc_compress_ctx(
                Int32(settings.level), shuffle, settings.typeSize ?? elementSize, input.count, input.baseAddress, buffer.baseAddress,
                capacity, settings.compressor, settings.blockSize, 1)
            count = written > 0 ? Int(written) : 0
        }
        guard written > 0 else { throw Zarr3CodecError("blosc: compressing a chunk failed (\(written))") }
        return output
    }

    /// Whether this machine's blosc library compresses with `compressor` (one may be built without some).
    static func bloscCompresses(with compressor: String) -> Bool { blosc_compname_to_compcode(compressor) >= 0 }

    /// The compressors this machine's blosc library has, comma-separated.
    static var bloscCompressors: String { String(cString: blosc_list_compressors()) }

    /// Compresses to one gzip member at `level`.
    static func gzipCompress(_ input: UnsafeRawBufferPointer, level: Int) throws(Zarr3CodecError) -> [UInt8] {
        var stream = z_stream()
        guard wkfs_deflate_init_gzip(&stream, Int32(level)) == Z_OK else { throw Zarr3CodecError("gzip: cannot start compressing") }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        var status = Z_OK
        let output = [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = buffer.baseAddress
            stream.avail_out = uInt(bound)
            status = deflate(&stream, Z_FINISH)
            count = status == Z_STREAM_END ? bound - Int(stream.avail_out) : 0
        }
        guard status == Z_STREAM_END else { throw Zarr3CodecError("gzip: compressing a chunk failed (\(status))") }
        return output
    }

    /// Decompresses gzip data (one member or several in a row, as gzip allows).
    static func gzipDecompress(_ input: UnsafeRawBufferPointer, size: DecodedSize) throws(Zarr3CodecError) -> [UInt8] {
        var stream = z_stream()
        guard wkfs_inflate_init(&stream) == Z_OK else { throw Zarr3CodecError("gzip: cannot start decompressing") }
        defer { inflateEnd(&stream) }
        var failure: String?
        // One byte of room past the most expected, so that more data is seen, not cut off.
        let room = size.capacity + 1
        let output = [UInt8](unsafeUninitializedCapacity: room) { buffer, count in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = buffer.baseAddress
            stream.avail_out = uInt(room)
            while true {
                let status = inflate(&stream, Z_FINISH)
                if status == Z_STREAM_END {
                    guard stream.avail_in > 0 else { break }
                    inflateReset(&stream)  // the next member
                    continue
                }
                if status == Z_BUF_ERROR && stream.avail_out > 0 {
                    failure = "the data ends before the gzip stream does (truncated)"
                } else if status == Z_BUF_ERROR {
                    failure = "holds more than the \(size.capacity) bytes expected"
                } else {
                    failure = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                }
                break
            }
            count = failure == nil ? room - Int(stream.avail_out) : 0
        }
        if let failure { throw Zarr3CodecError("gzip: \(failure)") }
        if let problem = size.problem(output.count) { throw Zarr3CodecError("gzip data \(problem)") }
        return output
    }

    /// CRC-32C (Castagnoli) of `bytes`, as Zarr3's `crc32c` codec stores it.
    static func crc32c(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        // ISA-L's iSCSI CRC is CRC-32C without the final inversion.
        return ~crc32_iscsi(UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self)), Int32(bytes.count), 0xFFFF_FFFF)
    }
}

/// Why a chunk or index did not decode (turned into a `FormatError` naming the file).
struct Zarr3CodecError: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}
