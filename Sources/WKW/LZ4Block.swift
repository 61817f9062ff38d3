internal import CLZ4

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
        let fast = LZ4_compress_default(src, dst, Int32(source.count), Int32(destination.count))
        precondition(fast > 0, "LZ4 compression cannot fail with a destination of compressBound bytes")
        guard highCompression, Int(fast) * 10 < source.count * 9 else { return Int(fast) }
        let written = LZ4_compress_HC(src, dst, Int32(source.count), Int32(destination.count), highCompressionLevel)
        precondition(written > 0, "LZ4HC compression cannot fail with a destination of compressBound bytes")
        return Int(written)
    }
}
