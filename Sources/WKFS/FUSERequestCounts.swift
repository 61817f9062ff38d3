import Synchronization

/// How many requests of each kind a session served and how many of them failed, for a
/// filesystem that shows them (`.wkfs/stats`).
public final class FUSERequestCounts: Sendable {
    private let counts = Mutex<[FUSEOperation: (served: Int, failed: Int)]>([:])

    public init() {}

    /// One request of `operation` was answered.
    func record(_ operation: FUSEOperation, failed: Bool) {
        counts.withLock { c in
            var entry = c[operation, default: (0, 0)]
            entry.served += 1
            if failed { entry.failed += 1 }
            c[operation] = entry
        }
    }

    /// The operations seen so far, in declaration order.
    public func snapshot() -> [(operation: FUSEOperation, served: Int, failed: Int)] {
        let current = counts.withLock { $0 }
        return FUSEOperation.allCases.compactMap { op in current[op].map { (op, $0.served, $0.failed) } }
    }
}
