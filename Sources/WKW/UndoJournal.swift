#if canImport(Glibc)
    import Glibc
#endif
import SystemPackage

/// The undo journal of an in-place patch of raw data files (as SQLite's rollback journal).
///
/// Raw files are patched where their blocks lie, not rewritten whole (a 1 GiB file for a small
/// patch). Before the first byte of a data file changes, the bytes about to be overwritten are
/// written to a journal in the mag directory and made durable (file and directory fsynced). Then
/// the files are patched and fsynced, and the journal is deleted (directory fsynced again). A
/// journal that survives its writer (a kill, a power cut, a full disk) is rolled back: its old
/// bytes are written back, so every file is its old content again. Its writer held the locks of
/// every file it names until the journal was gone, so a journal whose files can all be locked
/// is one nobody is writing.
///
/// Layout (little-endian): magic `WKFSUNDO`, version u32 (1), entry count u32, then per entry the
/// data file index (3 × i64), the offset (u64), the length (u64) and the old bytes; last an
/// FNV-1a 64 checksum of everything before it. A journal whose checksum does not match was cut
/// short before it was synced, so no data file was touched yet: it is only deleted.
struct UndoJournal {
    struct Entry {
        var file: Vec3
        var offset: Int
        var bytes: [UInt8]
    }

    static let prefix = ".wkfs-undo-"
    static let magic = Array("WKFSUNDO".utf8)

    var entries: [Entry] = []

    /// Whether `name` (in a mag directory) is an undo journal's name.
    static func isJournalName(_ name: String) -> Bool { name.hasPrefix(prefix) }

    func encoded() -> [UInt8] {
        var out = Self.magic
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        put(UInt32(1))
        put(UInt32(entries.count))
        for entry in entries {
            put(Int64(entry.file.x))
            put(Int64(entry.file.y))
            put(Int64(entry.file.z))
            put(UInt64(entry.offset))
            put(UInt64(entry.bytes.count))
            out.append(contentsOf: entry.bytes)
        }
        put(Self.checksum(out[...]))
        return out
    }

    /// The journal in `bytes`; nil when it is not a whole journal (wrong magic or checksum).
    static func decode(_ bytes: [UInt8]) -> UndoJournal? {
        guard bytes.count >= magic.count + 16, Array(bytes.prefix(magic.count)) == magic else { return nil }
        let end = bytes.count - 8
        let sum = bytes[end...].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard sum == checksum(bytes[..<end]) else { return nil }
        var position = magic.count
        func take<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard position + MemoryLayout<T>.size <= end else { return nil }
            var value = T.zero
            withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[position..<(position + MemoryLayout<T>.size)]) }
            position += MemoryLayout<T>.size
            return T(littleEndian: value)
        }
        guard take(UInt32.self) == 1, let count = take(UInt32.self) else { return nil }
        var journal = UndoJournal()
        for _ in 0..<count {
            guard let x = take(Int64.self), let y = take(Int64.self), let z = take(Int64.self),
                let offset = take(UInt64.self), let length = take(UInt64.self),
                offset <= UInt64(Int32.max) * 64, length <= UInt64(end - position)
            else { return nil }
            let start = position
            position += Int(length)
            journal.entries.append(Entry(file: Vec3(Int(x), Int(y), Int(z)), offset: Int(offset), bytes: Array(bytes[start..<position])))
        }
        return position == end ? journal : nil
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}

extension MagDirectory {
    /// The undo journals in this mag directory (names).
    func journalNames() throws -> [String] {
        try PathOps.listOrThrow(path).filter(UndoJournal.isJournalName).sorted()
    }

    /// Writes `journal` durably under its final name (written whole to a temporary file first,
    /// so a journal under a journal's name is always complete) and returns its path.
    func writeJournal(_ journal: UndoJournal) throws -> String {
        let journalPath = "\(path)/\(UndoJournal.prefix)\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let temporary = try AtomicFile.prepare(journalPath) { file in
            try journal.encoded().withUnsafeBytes { try file.write(at: 0, $0) }
        }
        do {
            try PathOps.rename(temporary, to: journalPath)
        } catch {
            PathOps.remove(temporary)
            throw error
        }
        do {
            try PathOps.syncDirectoryOrThrow(path)
        } catch {
            PathOps.remove(journalPath)
            throw error
        }
        return journalPath
    }

    /// Deletes a journal whose patch is complete and durable, durably.
    func retireJournal(_ journalPath: String) throws {
        guard unlink(journalPath) == 0 else {
            let code = errno
            throw WKWError(.io(errno: code), path: journalPath, "cannot delete the undo journal: \(Errno(rawValue: code))")
        }
        try PathOps.syncDirectoryOrThrow(path)
    }

    /// Rolls back every journal left by a writer that is gone (one whose files can all be locked,
    /// besides `held`, the files the caller has locked itself).
    /// - Returns: a line for each journal rolled back.
    /// - Throws: `WKWError` when a journal is damaged (it is left for a person to look at) or a
    ///   rollback fails.
    @discardableResult
    public func rollBackInterruptedWrites(holding held: Set<Vec3> = []) throws -> [String] {
        var done: [String] = []
        for name in try journalNames() where !name.hasSuffix(".tmp") {
            let journalPath = path + "/" + name
            guard let file = try OpenFile.openIfExists(journalPath) else { continue }
            guard let journal = UndoJournal.decode(try file.read(at: 0, count: try file.size())) else {
                throw WKWError(.corrupt, path: journalPath, "undo journal of an interrupted write is damaged; the data files it names may be partly written")
            }
            let files = Set(journal.entries.map(\.file))
            guard let lock = try tryLockFiles(Array(files.subtracting(held))) else { continue }
            defer { lock.unlock() }
            guard PathOps.exists(journalPath) else { continue }  // its writer finished meanwhile
            try rollBack(journal)
            try retireJournal(journalPath)
            done.append("\(journalPath): rolled back an interrupted write of \(files.count) data file(s)")
        }
        return done
    }

    private func rollBack(_ journal: UndoJournal) throws {
        var touched: [Vec3: OpenFile] = [:]
        for entry in journal.entries {
            let file: OpenFile
            if let open = touched[entry.file] {
                file = open
            } else {
                guard let open = try OpenFile.openIfExists(filePath(entry.file), writable: true) else {
                    throw WKWError(.notFound, path: filePath(entry.file), "an undo journal names this data file, which is gone")
                }
                touched[entry.file] = open
                file = open
            }
            // Zeros were most likely a hole of the sparse file: punching it again needs no free
            // space, which a rollback after ENOSPC may not have.
            if entry.bytes.allSatisfy({ $0 == 0 }), file.punchHole(entry.offset..<(entry.offset + entry.bytes.count)) { continue }
            try entry.bytes.withUnsafeBytes { try file.write(at: entry.offset, $0) }
        }
        for file in touched.values { try file.sync() }
    }
}
