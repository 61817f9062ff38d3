#if canImport(Glibc)
    import Glibc
#endif

/// Scratch memory for region reads and writes of many MiB. Each fresh 4 KiB page costs a page
/// fault (a large part of a read's time on a virtual machine), so these buffers ask for
/// transparent huge pages: one fault per 2 MiB where the kernel allows it.
public enum LargeBuffer {
    static let hugePage = 2 << 20

    /// Uninitialized memory; release it with `deallocate()`.
    public static func allocate(byteCount: Int) -> UnsafeMutableRawBufferPointer {
        guard byteCount >= hugePage else { return .allocate(byteCount: max(1, byteCount), alignment: 16) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: byteCount, alignment: hugePage)
        #if canImport(Glibc)
            // Advice only: a kernel without huge pages just ignores it.
            _ = madvise(buffer.baseAddress, byteCount / hugePage * hugePage, MADV_HUGEPAGE)
        #endif
        return buffer
    }
}
