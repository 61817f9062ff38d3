/// Locks that serialize changes of one data file across threads, processes and machines.
///
/// Every change of a data file (a read-merge-rewrite of a compressed file, an in-place patch of a
/// raw one, a whole-file replace) happens while its writer holds the file's lock: one byte of
/// `header.wkw`, which is never replaced, locked with `FileLock`. The byte of file (x, y, z) is
/// chosen from the low bits of its index; two files that share a byte only wait for each other.
/// Whoever takes several locks takes them in ascending byte order, so writers cannot deadlock.
extension MagDirectory {
    /// The lock byte of data file `index` in `header.wkw`.
    static func lockByte(_ index: Vec3) -> Int {
        let mask = (1 << 13) - 1
        return 1 << 40 | (index.x & mask) | (index.y & mask) << 13 | (index.z & mask) << 26
    }

    var lockFilePath: String { path + "/header.wkw" }

    /// The lock ranges of data files `indices` in `header.wkw`: one byte each, ascending.
    static func lockRanges(_ indices: [Vec3]) -> [(start: Int, length: Int)] {
        Array(Set(indices.map(lockByte))).sorted().map { ($0, 1) }
    }

    /// Takes the write locks of data files `indices`, waiting for other writers, and rolls back
    /// what a killed writer left half-patched in them (`UndoJournal`): whoever changes a file
    /// starts from its old or its new content, never from a mix.
    public func lockFiles(_ indices: [Vec3]) throws -> MagLock {
        let lock = try takeLocks(indices)
        do {
            if !header.blockType.isCompressed { for index in indices { try rollBackHoldingLock(index) } }
        } catch {
            lock.unlock()
            throw error
        }
        return lock
    }

    /// Takes the write locks of data files `indices`, waiting for other writers.
    func takeLocks(_ indices: [Vec3]) throws -> MagLock {
        guard !indices.isEmpty else { return MagLock(nil) }
        return MagLock(try FileLock.lock(lockFilePath, ranges: Self.lockRanges(indices), exclusive: true)!)
    }

    /// Takes the write locks of `indices` only when no one holds any of them (nil otherwise):
    /// for finding what a dead writer left.
    public func tryLockFiles(_ indices: [Vec3]) throws -> MagLock? {
        guard !indices.isEmpty else { return MagLock(nil) }
        return try FileLock.lock(lockFilePath, ranges: Self.lockRanges(indices), exclusive: true, wait: false).map(MagLock.init)
    }

    /// Runs `body` holding the write locks of `indices`.
    public func withFilesLocked<T>(_ indices: [Vec3], _ body: () throws -> T) throws -> T {
        let lock = try lockFiles(indices)
        defer { lock.unlock() }
        return try body()
    }
}

/// Held locks of data files of one mag; released by `unlock` or when dropped.
public final class MagLock: Sendable {
    private let lock: FileLock?

    init(_ lock: FileLock?) { self.lock = lock }

    public func unlock() { lock?.unlock() }
}
