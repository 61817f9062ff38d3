#if canImport(Glibc)
    import Glibc
#endif
import SystemPackage

/// The undo journal of an in-place patch of one raw data file (as SQLite's rollback journal).
///
/// Raw files are patched where their blocks lie, not rewritten whole (a 1 GiB file for a small
/// patch). A region write comes in slabs; before a slab changes the first byte of a data file, the
/// bytes about to be overwritten are saved in a journal segment beside the file (`x1.wkw.wkfs-undo`
/// for the write's first slab of that file, `x1.wkw.wkfs-undo.K` for later ones; each written whole
/// under a temporary name, fsynced, renamed, directory fsynced). After the last slab the files are
/// fsynced and segment 0 is deleted (directory fsynced): that is the write's commit point; the other
/// segments are deleted after it. Each segment carries the write's random id, so a segment left by
/// an earlier write is never applied.
///
/// The writer holds the file's lock (`lockFiles`) from before segment 0 exists until it is gone,
/// so whoever holds that lock and finds segment 0 knows its writer died (a kill, a power cut, a full
/// disk): it writes back the old bytes of every segment of that write, and the file is its old
/// content again. Every writer of a raw file, every reader that opens one (`wkfs read`, the mount)
/// and `wkfs check --repair` do that first; `wkfs check` reports a journal it finds.
///
/// Layout (little-endian): magic `WKFSUNDO`, version u32 (3), the write's id u64, entry count u32,
/// then per entry the offset (u64), the length (u64), a kind byte (0: the old bytes follow; 1: the
/// range was a hole of the sparse file, nothing follows); last an FNV-1a 64 checksum of everything
/// before it. Versions 1 (no kind byte, no id) and 2 (no id) are still read. A journal under its
/// final name is always whole; a wrong checksum is damage. Holes matter: the first writes into a
/// new 1 GiB raw file would otherwise journal a gigabyte of zeros.
struct UndoJournal {
    struct Entry {
        var offset: Int
        /// The old bytes; for a hole, empty (the range read as zeros and took no space).
        var bytes: [UInt8]
        /// Bytes in the range.
        var length: Int
        var isHole: Bool { bytes.isEmpty && length > 0 }

        init(offset: Int, bytes: [UInt8]) {
            self.offset = offset
            self.bytes = bytes
            length = bytes.count
        }

        init(offset: Int, holeOf length: Int) {
            self.offset = offset
            bytes = []
            self.length = length
        }
    }

    static let suffix = ".wkfs-undo"
    static let magic = Array("WKFSUNDO".utf8)

    var entries: [Entry] = []
    /// The region write this segment belongs to (0 in journals older than version 3).
    var writeID: UInt64 = 0

    func encoded() -> [UInt8] {
        var out = Self.magic
        out.reserveCapacity(entries.reduce(32) { $0 + 16 + $1.bytes.count })
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        put(UInt32(3))
        put(writeID)
        put(UInt32(entries.count))
        for entry in entries {
            put(UInt64(entry.offset))
            put(UInt64(entry.length))
            put(UInt8(entry.isHole ? 1 : 0))
            out.append(contentsOf: entry.bytes)
        }
        put(Checksum.fnv1a(out))
        return out
    }

    /// The journal in `bytes`; nil when it is not a whole journal (wrong magic or checksum).
    static func decode(_ bytes: [UInt8]) -> UndoJournal? {
        guard bytes.count >= magic.count + 16, Array(bytes.prefix(magic.count)) == magic else { return nil }
        let end = bytes.count - 8
        let sum = bytes[end...].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard sum == Checksum.fnv1a(bytes[..<end]) else { return nil }
        var position = magic.count
        func take<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard position + MemoryLayout<T>.size <= end else { return nil }
            var value = T.zero
            withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[position..<(position + MemoryLayout<T>.size)]) }
            position += MemoryLayout<T>.size
            return T(littleEndian: value)
        }
        guard let version = take(UInt32.self), (1...3).contains(version) else { return nil }
        var journal = UndoJournal()
        if version >= 3 {
            guard let id = take(UInt64.self) else { return nil }
            journal.writeID = id
        }
        guard let count = take(UInt32.self) else { return nil }
        for _ in 0..<count {
            guard let offset = take(UInt64.self), let length = take(UInt64.self), let kind = version == 1 ? 0 : take(UInt8.self),
                offset <= UInt64(1 << 50), length <= UInt64(1 << 50), kind <= 1
            else { return nil }
            if kind == 1 {
                guard length > 0 else { return nil }
                journal.entries.append(Entry(offset: Int(offset), holeOf: Int(length)))
                continue
            }
            guard length <= UInt64(end - position) else { return nil }
            let start = position
            position += Int(length)
            journal.entries.append(Entry(offset: Int(offset), bytes: Array(bytes[start..<position])))
        }
        return position == end ? journal : nil
    }
}

extension MagDirectory {
    /// The path of segment 0 of data file `index`'s undo journal: while it exists, a write of the
    /// file is under way or was interrupted.
    public func journalPath(_ index: Vec3) -> String { segmentPath(index, 0) }

    /// The path of segment `k` of data file `index`'s undo journal.
    func segmentPath(_ index: Vec3, _ k: Int) -> String {
        k == 0 ? filePath(index) + UndoJournal.suffix : filePath(index) + UndoJournal.suffix + ".\(k)"
    }

    /// Writes journal segments of several files durably (each whole under a temporary name, all
    /// fsynced, renamed, their directories fsynced). On failure none of them is left.
    func writeJournals(_ segments: [(index: Vec3, segment: Int, journal: UndoJournal)]) throws {
        var prepared: [(temporary: String, final: String)] = []
        do {
            for (index, k, journal) in segments {
                prepared.append(
                    (try AtomicFile.prepare(segmentPath(index, k), sync: false) { file in
                        try journal.encoded().withUnsafeBytes { try file.write(at: 0, $0) }
                    }, segmentPath(index, k)))
            }
            try AtomicFile.putInPlace(prepared)
        } catch {
            prepared.forEach { PathOps.remove($0.temporary) }
            segments.forEach { PathOps.remove(segmentPath($0.index, $0.segment)) }
            throw error
        }
    }

    /// Deletes the journals of files whose patch is complete and fsynced: segment 0 of each,
    /// durably (the commit point), then the later segments (left over, they are never applied).
    func retireJournals(_ indices: [Vec3]) throws {
        for index in indices where unlink(journalPath(index)) != 0 && errno != ENOENT {
            let code = errno
            throw FormatError(.io(errno: code), path: journalPath(index), "cannot delete the undo journal: \(Errno(rawValue: code))")
        }
        for directory in Set(indices.map { PathOps.dirname(filePath($0)) }) { try PathOps.syncDirectoryOrThrow(directory) }
        for index in indices { removeLaterSegments(index) }
    }

    /// The later segments (1, 2, …) of file `index`'s journal that are on disk, by number.
    private func laterSegments(_ index: Vec3) -> [(k: Int, path: String)] {
        let prefix = "x\(index.x).wkw" + UndoJournal.suffix + "."
        return PathOps.list(PathOps.dirname(filePath(index))).compactMap { name in
            guard name.hasPrefix(prefix), let k = Int(name.dropFirst(prefix.count)), k > 0, String(k) == name.dropFirst(prefix.count) else { return nil }
            return (k, PathOps.dirname(filePath(index)) + "/" + name)
        }
    }

    private func removeLaterSegments(_ index: Vec3) {
        for (_, path) in laterSegments(index) { PathOps.remove(path) }
    }

    /// Rolls back the interrupted patch of data file `index` when its journal is there. The
    /// caller holds the file's lock, so the journal's writer is gone.
    /// - Returns: whether there was one.
    @discardableResult
    func rollBackHoldingLock(_ index: Vec3) throws -> Bool {
        let path = journalPath(index)
        guard let journalFile = try OpenFile.openIfExists(path) else { return false }
        guard !repairsDisabled else {
            throw FormatError(
                .corrupt, path: filePath(index),
                "an interrupted write left this file partly written (undo journal \(path)); run wkfs check --repair where the dataset is writable")
        }
        func decode(_ file: OpenFile, _ path: String) throws -> UndoJournal {
            guard let journal = UndoJournal.decode(try file.read(at: 0, count: try file.size())) else {
                throw FormatError(.corrupt, path: path, "undo journal of an interrupted write is damaged; \(filePath(index)) may be partly written")
            }
            return journal
        }
        let first = try decode(journalFile, path)
        var journals = [first]
        for (_, segment) in laterSegments(index) {
            guard let file = try OpenFile.openIfExists(segment) else { continue }
            let journal = try decode(file, segment)
            if journal.writeID == first.writeID && first.writeID != 0 { journals.append(journal) }
        }
        guard let file = try OpenFile.openIfExists(filePath(index), writable: true) else {
            throw FormatError(.notFound, path: filePath(index), "an undo journal (\(path)) names this data file, which is gone")
        }
        // In any order: the segments' ranges do not overlap (slabs are block aligned).
        for entry in journals.flatMap(\.entries) {
            // A hole is punched again, which needs no free space (a rollback after ENOSPC may
            // have none); zeros where the file system cannot punch.
            let range = entry.offset..<(entry.offset + entry.length)
            if entry.isHole || entry.bytes.allSatisfy({ $0 == 0 }), file.punchHole(range) { continue }
            let bytes = entry.isHole ? [UInt8](repeating: 0, count: entry.length) : entry.bytes
            try bytes.withUnsafeBytes { try file.write(at: entry.offset, $0) }
        }
        try file.sync()
        try retireJournals([index])
        return true
    }

    /// Rolls back the interrupted patches of the raw data files `indices`, taking each one's lock
    /// only where a journal is there (one `stat` per file otherwise).
    /// - Returns: the data files rolled back.
    @discardableResult
    public func rollBackInterruptedWrites(_ indices: [Vec3]) throws -> [String] {
        guard !header.blockType.isCompressed else { return [] }
        var done: [String] = []
        for index in indices where PathOps.exists(journalPath(index)) {
            if repairsDisabled {
                // Wait for a running writer (a shared lock needs no write access), then refuse a
                // journal that is still there.
                let lock = try FileLock.lock(lockFilePath, ranges: [(Self.lockByte(index), 1)], exclusive: false)
                defer { lock?.unlock() }
                try rollBackHoldingLock(index)
            } else {
                let lock = try takeLocks([index])
                defer { lock.unlock() }
                if try rollBackHoldingLock(index) { done.append(filePath(index)) }
            }
        }
        return done
    }
}
