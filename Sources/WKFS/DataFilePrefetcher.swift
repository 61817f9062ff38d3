import Dispatch
import Synchronization
import WKW

/// Reads ahead the small data files of cubes a program is likely to open next.
///
/// A program that streams many small cubes (`cp -r`, `rsync`, a loop of `dd` over an 8/8 dataset:
/// thousands of files of 256 KiB) opens one after another, and each open waited on the disk for
/// its own file. When a cube is opened, the data files of its row (`zZ/yY/`) and of the next row
/// are read ahead on a background queue, so the disk works while the cubes before them are served.
/// Large files are not: a region of one is read ahead as it is read (`BlockCache.prefetch`).
final class DataFilePrefetcher: Sendable {
    /// Data files larger than this (decoded) are not read ahead whole.
    static let largestFile = 16 << 20
    /// Bytes asked for per row at most.
    static let rowBudget = 64 << 20
    /// A row read ahead this recently is not asked for again.
    static let interval = Duration.seconds(10)

    /// Rows read ahead recently: mag path and row -> when.
    private let recent = Mutex<[RowKey: ContinuousClock.Instant]>([:])
    private let queue = DispatchQueue(label: "wkfs.data-file-prefetch", qos: .utility)

    private struct RowKey: Hashable {
        var mag: String
        var y: Int
        var z: Int
    }

    /// Cube `index` of `mag` was opened for reading.
    func cubeOpened(_ mag: MagDirectory, _ index: Vec3) {
        guard mag.header.rawFileLength <= Self.largestFile else { return }
        let now = ContinuousClock.now
        let rows = recent.withLock { recent in
            if recent.count > 4096 { recent.removeAll() }
            return [index.y, index.y + 1].compactMap { y -> RowKey? in
                let key = RowKey(mag: mag.path, y: y, z: index.z)
                if let last = recent[key], now - last < Self.interval { return nil }
                recent[key] = now
                return key
            }
        }
        guard !rows.isEmpty else { return }
        queue.async {
            for row in rows {
                // The files after the opened one first (most programs walk a row forward).
                let xs = mag.fileRow(y: row.y, z: row.z)
                let ordered = row.y == index.y ? xs.filter { $0 > index.x } + xs.filter { $0 < index.x } : xs
                mag.willNeed(files: ordered.map { Vec3($0, row.y, row.z) }, budget: Self.rowBudget)
            }
        }
    }
}
