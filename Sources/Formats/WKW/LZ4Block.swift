internal import CLZ4
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Bare LZ4 blocks (no frame, no size prefix), as WKW stores them.
/// The only file of the format layer that calls liblz4.
enum LZ4Block {
    /// LZ4HC level used when writing LZ4HC blocks (the reference writes 9).
    static let highCompressionLevel: Int32 = 9

    /// Worst-case compressed size of `count` input bytes.
    static func bound(_ count: Int) -> Int {
        Int(LZ4_compressBound(Int32(count)))
    }

    /// Decodes `source` into all of `destination`.
    /// - Returns: false unless the data is valid LZ4 that decodes to exactly `destination.count` bytes.
    static func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        guard source.count <= Int32.max, destination.count <= Int32.max else { return false }
        let produced = LZ4_decompress_safe(
            source.baseAddress?.assumingMemoryBound(to: CChar.self),
            destination.baseAddress?.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(destination.count))
        return Int(produced) == destination.count
    }

    /// A compressed copy of `source` (see `compress`), in an array of exactly its size: encoded
    /// blocks wait in memory by the thousand, and a tiny block of zeros must not keep a whole
    /// block's worth of capacity.
    static func compressed(_ source: UnsafeRawBufferPointer, highCompression: Bool) -> [UInt8] {
        withUnsafeTemporaryAllocation(byteCount: bound(source.count), alignment: 16) { scratch in
            let count = compress(source, into: scratch, highCompression: highCompression)
            return [UInt8](UnsafeRawBufferPointer(rebasing: scratch[0..<count]))
        }
    }

    /// Compresses `source` into `destination` (at least `bound(source.count)` bytes).
    ///
    /// With `highCompression`, a block that fast LZ4 cannot shrink below 90% is kept as fast LZ4
    /// produced it: LZ4HC spends about 100 times longer on such (noisy) data for a gain under 1%.
    /// Both are plain LZ4 blocks and decode the same way.
    /// - Returns: the compressed size.
    static func compress(
        _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, highCompression: Bool
    ) -> Int {
        let src = source.baseAddress?.assumingMemoryBound(to: CChar.self)
        let dst = destination.baseAddress?.assumingMemoryBound(to: CChar.self)
        let state = CompressionState.current()
        // A reset `_fast` state keeps no history: each block is compressed on its own, as before.
        LZ4_resetStream_fast(state.fast)
        let fast = LZ4_compress_fast_continue(state.fast, src, dst, Int32(source.count), Int32(destination.count), 1)
        precondition(fast > 0, "LZ4 compression cannot fail with a destination of compressBound bytes")
        guard highCompression, Int(fast) * 10 < source.count * 9 else { return Int(fast) }
        let hc = state.highCompression()
        LZ4_resetStreamHC_fast(hc, highCompressionLevel)
        let written = LZ4_compress_HC_continue(hc, src, dst, Int32(source.count), Int32(destination.count))
        precondition(written > 0, "LZ4HC compression cannot fail with a destination of compressBound bytes")
        return Int(written)
    }
}

/// Compression states kept from one block to the next, one per thread.
///
/// liblz4's one-shot calls set up a new state for every block: fast LZ4 clears a 16 KiB table,
/// LZ4HC allocates and clears 256 KiB. For a 512-byte block (an 8/8 mag) that cost more than the
/// compression itself (6% of a mount's time taking `cp` of cubes). A kept state is reset with the
/// `_fast` calls instead, which only move its window past the old entries. Per thread, because
/// blocks are compressed in parallel and a shared pool's lock was contended for every block.
private final class CompressionState {
    let fast: UnsafeMutablePointer<LZ4_stream_t>
    private var hc: UnsafeMutablePointer<LZ4_streamHC_t>?

    private init() {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: Int(LZ4_sizeofState()), alignment: 16)
        fast = LZ4_initStream(memory, Int(LZ4_sizeofState()))!
    }

    deinit {
        UnsafeMutableRawPointer(fast).deallocate()
        hc.map { UnsafeMutableRawPointer($0).deallocate() }
    }

    /// The LZ4HC state, made on first use (most threads never compress LZ4HC).
    func highCompression() -> UnsafeMutablePointer<LZ4_streamHC_t> {
        if let hc { return hc }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: Int(LZ4_sizeofStateHC()), alignment: 16)
        let made = LZ4_initStreamHC(memory, Int(LZ4_sizeofStateHC()))!
        hc = made
        return made
    }

    /// The calling thread's state; freed when the thread ends.
    static func current() -> CompressionState {
        if let kept = pthread_getspecific(key) { return Unmanaged<CompressionState>.fromOpaque(kept).takeUnretainedValue() }
        let state = CompressionState()
        // When the thread cannot keep it, the state serves this one block only.
        if pthread_setspecific(key, Unmanaged.passRetained(state).toOpaque()) != 0 { release(Unmanaged.passUnretained(state).toOpaque()) }
        return state
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let made = pthread_key_create(&key) { kept in release(kept) }
        precondition(made == 0, "pthread_key_create failed: \(made)")
        return key
    }()

    /// The key's destructor: Glibc passes an optional pointer, Darwin a plain one.
    private static func release(_ kept: UnsafeMutableRawPointer?) {
        if let kept { Unmanaged<CompressionState>.fromOpaque(kept).release() }
    }

    private static func release(_ kept: UnsafeMutableRawPointer) {
        Unmanaged<CompressionState>.fromOpaque(kept).release()
    }
}
