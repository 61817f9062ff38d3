import CBlosc
import CISAL
import CZlib
import CZstd
import Synchronization

/// The C libraries behind Zarr3's byte codecs: zstd, blosc, gzip (zlib) and crc32c. The only
/// file of the Zarr3 format that calls C.
enum Zarr3Compression {
    /// Decompresses a zstd frame into exactly `expected` bytes.
    static func zstdDecompress(_ input: UnsafeRawBufferPointer, expected: Int) throws(Zarr3CodecError) -> [UInt8] {
        let declared = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        if declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ZSTD_CONTENTSIZE_ERROR && declared != UInt64(expected) {
            throw Zarr3CodecError("zstd frame holds \(declared) bytes, expected \(expected)")
        }
        var failure: String?
        let output = [UInt8](unsafeUninitializedCapacity: expected) { buffer, count in
            let n = ZSTD_decompress(buffer.baseAddress, expected, input.baseAddress, input.count)
            if ZSTD_isError(n) != 0 {
                failure = String(cString: ZSTD_getErrorName(n))
                count = 0
            } else if n != expected {
                failure = "zstd frame holds \(n) bytes, expected \(expected)"
                count = 0
            } else {
                count = n
            }
        }
        if let failure { throw Zarr3CodecError("zstd: \(failure)") }
        return output
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

    /// Decompresses a blosc buffer into exactly `expected` bytes.
    static func bloscDecompress(_ input: UnsafeRawBufferPointer, expected: Int) throws(Zarr3CodecError) -> [UInt8] {
        var nbytes = 0, cbytes = 0, blocksize = 0
        guard input.count >= 16 else { throw Zarr3CodecError("blosc: buffer of \(input.count) bytes is too short") }
        blosc_cbuffer_sizes(input.baseAddress, &nbytes, &cbytes, &blocksize)
        guard nbytes == expected, cbytes <= input.count else {
            throw Zarr3CodecError("blosc buffer holds \(nbytes) bytes (\(cbytes) stored), expected \(expected)")
        }
        var failed = false
        let output = [UInt8](unsafeUninitializedCapacity: expected) { buffer, count in
            // The context variant: thread-safe without blosc_init, one thread.
            let n = blosc_decompress_ctx(input.baseAddress, buffer.baseAddress, expected, 1)
            failed = n != Int32(expected)
            count = failed ? 0 : expected
        }
        if failed { throw Zarr3CodecError("blosc: the chunk does not decompress") }
        return output
    }

    /// Compresses with blosc as `settings` say; `elementSize` is the shuffle's type size when the
    /// settings give none.
    static func bloscCompress(
        _ input: UnsafeRawBufferPointer, _ settings: Zarr3Metadata.Blosc, elementSize: Int
    ) throws(Zarr3CodecError) -> [UInt8] {
        guard blosc_compname_to_compcode(settings.compressor) >= 0 else {
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

    /// Decompresses gzip data (one member or several in a row, as gzip allows) into exactly
    /// `expected` bytes.
    static func gzipDecompress(_ input: UnsafeRawBufferPointer, expected: Int) throws(Zarr3CodecError) -> [UInt8] {
        var stream = z_stream()
        guard wkfs_inflate_init(&stream) == Z_OK else { throw Zarr3CodecError("gzip: cannot start decompressing") }
        defer { inflateEnd(&stream) }
        var failure: String?
        // One byte of room past `expected`, so that more data than expected is seen, not cut off.
        let output = [UInt8](unsafeUninitializedCapacity: expected + 1) { buffer, count in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = buffer.baseAddress
            stream.avail_out = uInt(expected + 1)
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
                    failure = "holds more than the \(expected) bytes expected"
                } else {
                    failure = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                }
                break
            }
            count = failure == nil ? expected + 1 - Int(stream.avail_out) : 0
        }
        if let failure { throw Zarr3CodecError("gzip: \(failure)") }
        guard output.count == expected else { throw Zarr3CodecError("gzip data holds \(output.count) bytes, expected \(expected)") }
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
