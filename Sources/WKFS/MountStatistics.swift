import Foundation
import Synchronization
import Formats
import WebKnossos

/// Counters of what the mount did since it started, shown in `.wkfs/stats`.
final class MountStatistics: Sendable {
    let started = ContinuousClock.now
    /// The mount's start as a file time: the modification time of `.wkfs/stats`.
    let startedAt = Timestamp.now
    let requests = FUSERequestCounts()
    let cubeBytesRead = Atomic<Int>(0)
    let cubeBytesWritten = Atomic<Int>(0)
    let cubesCommitted = Atomic<Int>(0)
    let commitsRefused = Atomic<Int>(0)

    static func add(_ counter: borrowing Atomic<Int>, _ amount: Int) {
        counter.wrappingAdd(amount, ordering: .relaxed)
    }
}

extension DatasetFilesystem {
    /// The text of `.wkfs/stats`: one `name: value` per line, counters since the mount started.
    func statisticsText() -> [UInt8] {
        let s = statistics
        let (handles, datasetPath) = state.withLock { ($0.handles.count, $0.dataset.path) }
        let cache = cache.statistics()
        var lines = [
            "# wkfs mount statistics: counters since the mount started",
            "dataset: \(datasetPath)",
            "uptime_seconds: \((ContinuousClock.now - s.started).components.seconds)",
            "cube_bytes_read: \(s.cubeBytesRead.load(ordering: .relaxed))",
            "cube_bytes_written: \(s.cubeBytesWritten.load(ordering: .relaxed))",
            "cubes_committed: \(s.cubesCommitted.load(ordering: .relaxed))",
            "cube_commits_refused: \(s.commitsRefused.load(ordering: .relaxed))",
            "cache_capacity_bytes: \(cache.capacity)",
            "cache_used_bytes: \(cache.used)",
            "cache_group_hits: \(cache.hits)",
            "cache_group_misses: \(cache.misses)",
            "cache_zero_groups: \(cache.zeroGroups)",
            "decoded_bytes: \(cache.decodedBytes)",
            "open_handles: \(handles)",
            "inodes_known: \(inodes.count)",
            "directories_awaiting_fsync: \(pendingDirectories.count)",
        ]
        for (operation, served, failed) in s.requests.snapshot() {
            lines.append("requests_\(operation): \(served)")
            if failed > 0 { lines.append("requests_\(operation)_failed: \(failed)") }
        }
        var text = Array(lines.joined(separator: "\n").utf8)
        // A fixed size (padded with spaces): the counters change as the file is read, and a
        // changing size makes archivers (tar) report the file as changed while they read it.
        let size = max(Self.statsSize, (text.count + 1 + 4095) / 4096 * 4096)
        text += [UInt8](repeating: 0x20, count: size - 1 - text.count) + [0x0A]
        return text
    }

    /// The size of `.wkfs/stats`.
    static let statsSize = 8192
}
