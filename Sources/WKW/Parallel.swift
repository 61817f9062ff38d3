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
        // their own cost more than the work.
        let chunks = min(count, 4 * coreCount)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            for i in stride(from: chunk, to: count, by: chunks) {
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
    public static func map<T: Sendable>(_ count: Int, _ body: @Sendable (Int) throws -> T) throws -> [T] {
        let slots = Slots<T>(count)
        defer { slots.free() }
        try forEach(count) { i in slots.set(i, try body(i)) }
        return slots.values()
    }
}

/// Result slots that parallel workers fill, each worker only its own index, so they need no lock.
private struct Slots<T: Sendable>: @unchecked Sendable {
    private let buffer: UnsafeMutableBufferPointer<T?>

    init(_ count: Int) {
        buffer = .allocate(capacity: count)
        buffer.initialize(repeating: nil)
    }

    func set(_ index: Int, _ value: T) { buffer[index] = value }
    func values() -> [T] { buffer.map { $0! } }

    func free() {
        buffer.deinitialize()
        buffer.deallocate()
    }
}
