import Dispatch

#if canImport(Glibc)
    import Glibc
#endif
import Synchronization

/// Runs independent pieces of work on every core and rethrows the first error.
public enum Parallel {
    /// Processors online when the process started. Read once: glibc's sysconf reads it from
    /// /sys on every call, which costs more than a small piece of work.
    public static let coreCount: Int = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))

    /// Calls `body(i)` for every `i` in `0..<count`, concurrently when there is more than one.
    /// Once one call throws, calls that have not started yet are skipped.
    public static func forEach(_ count: Int, _ body: @Sendable (Int) throws -> Void) throws {
        if count == 0 { return }
        if count == 1 { return try body(0) }
        let failure = Mutex<(any Error)?>(nil)
        // A few chunks per core: thousands of tiny items (512-byte blocks) each dispatched on
        // their own cost more than the work. Each chunk is a run of neighbouring items: blocks
        // next to each other share cache lines of the slab they come from (chunks of every
        // eighth item had each worker load every line: a third of the CPU of an 8/8 write).
        let chunks = min(count, 4 * coreCount)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            for i in (chunk * count / chunks)..<((chunk + 1) * count / chunks) {
                if failure.withLock({ $0 != nil }) { return }
                do {
                    try body(i)
                } catch {
                    failure.withLock { if $0 == nil { $0 = error } }
                    return
                }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }

    /// `(0..<count).map(body)`, computed concurrently.
    /// Inlinable so that callers get it specialized for their `T`: generic, it looked up `T`'s
    /// metadata for every element (2% of a mount's time writing 8/8 cubes).
    @inlinable
    public static func map<T: Sendable>(_ count: Int, _ body: @Sendable (Int) throws -> T) throws -> [T] {
        let slots = Slots<T>(count)
        defer { slots.free() }
        try forEach(count) { i in slots.set(i, try body(i)) }
        return slots.values()
    }
}

/// Result slots that parallel workers fill, each worker only its own index, so they need no lock.
@usableFromInline
struct Slots<T: Sendable>: @unchecked Sendable {
    @usableFromInline let buffer: UnsafeMutableBufferPointer<T?>

    @inlinable
    init(_ count: Int) {
        buffer = .allocate(capacity: count)
        buffer.initialize(repeating: nil)
    }

    @inlinable func set(_ index: Int, _ value: T) { buffer[index] = value }
    @inlinable func values() -> [T] { buffer.map { $0! } }

    @inlinable
    func free() {
        buffer.deinitialize()
        buffer.deallocate()
    }
}
