import Dispatch
import Synchronization
import Formats

/// Reads ahead the small data files of cubes a program is about to open.
///
/// A program that streams many small cubes (`cp -r`, `rsync`, a loop of `dd` over an 8/8 dataset:
/// thousands of files of 256 KiB) opens one after another, and each open waited on the disk for
/// its own file. Once two cubes in a row were opened for reading one after the other (a walk, not
/// a single lookup), the data files of that row and of the next are read ahead on a background
/// queue, so the disk works while the cubes before them are served. Large files are not: a region
/// of one is read ahead as it is read (`BlockCache.prefetch`).
final class DataFilePrefetcher: Sendable {
    /// Data files larger than this (decoded) are not read ahead whole.
    static let largestFile = 16 << 20
    /// Bytes asked for per row at most.
    static let rowBudget = 16 << 20
    /// A row read ahead this recently is not asked for again.
    static let interval = Duration.seconds(10)
    /// Rows waiting on the queue at most; a walk faster than the disk skips rows, not queues them.
    static let queuedLimit = 4

    private struct RowKey: Hashable {
        var mag: String
        var y: Int
        var z: Int
    }

    private struct State {
        /// Rows read ahead recently, and when.
        var recent: [RowKey: ContinuousClock.Instant] = [:]
        /// The row of the cube opened last, per mag.
        var lastRow: [String: (y: Int, z: Int)] = [:]
        var queued = 0
    }

    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "wkfs.data-file-prefetch", qos: .utility)

    /// Cube `index` of `mag` was opened for reading; only mags whose files are read ahead whole
    /// (`readsAheadWholeFiles`) take part.
    func cubeOpened(_ mag: any MagStore, _ index: Vec3) {
        // A data file's header adds a few bytes to its decoded size: one of exactly the limit
        // is over it.
        guard mag.readsAheadWholeFiles, mag.fileBytes < Self.largestFile else { return }
        let now = ContinuousClock.now
        let rows = state.withLock { s -> [RowKey] in
            let last = s.lastRow[mag.path]
            if s.lastRow.count > 1024 { s.lastRow.removeAll() }
            s.lastRow[mag.path] = (index.y, index.z)
            // A walk: the cube opened before was in this row, or in the row (or plane) before.
            guard let last,
                (last.z == index.z && (last.y == index.y || last.y == index.y - 1)) || last.z == index.z - 1,
                s.queued < Self.queuedLimit
            else { return [] }
            if s.recent.count > 4096 { s.recent.removeAll() }
            let rows = [index.y, index.y + 1].compactMap { y -> RowKey? in
                let key = RowKey(mag: mag.path, y: y, z: index.z)
                if let asked = s.recent[key], now - asked < Self.interval { return nil }
                s.recent[key] = now
                return key
            }
            if !rows.isEmpty { s.queued += 1 }
            return rows
        }
        guard !rows.isEmpty else { return }
        queue.async {
            defer { self.state.withLock { $0.queued -= 1 } }
            for row in rows {
                // The files after the opened one first (most programs walk a row forward).
                // Advice only: a row that cannot be listed fails the reads of its own cubes.
                let xs = (try? mag.fileXs(y: row.y, z: row.z)) ?? []
                let ordered = row.y == index.y ? xs.filter { $0 > index.x } + xs.filter { $0 < index.x } : xs
                mag.willNeed(files: ordered.map { Vec3($0, row.y, row.z) }, budget: Self.rowBudget)
            }
        }
    }
}
