#if canImport(Glibc)
    import Glibc
#endif

/// Replaces a file as a whole: write a temporary file beside it, fsync, rename over it.
/// A crash at any moment leaves either the old or the new file.
public enum AtomicFile {
    /// A temporary name beside `path` that no other writer uses and no listing mistakes for data.
    static func temporaryPath(for path: String) -> String {
        "\(path).\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
    }

    /// Atomically replaces (or creates) `path` with `bytes`.
    public static func write(_ path: String, _ bytes: [UInt8]) throws {
        try write(path) { file in
            try bytes.withUnsafeBytes { try file.write(at: 0, $0) }
        }
    }

    /// Atomically replaces (or creates) `path` with what `fill` writes into a new file. The
    /// directory is synced at once, or remembered in `directories` to be synced later.
    static func write(_ path: String, directories: PendingDirectorySyncs? = nil, fill: (OpenFile) throws -> Void) throws {
        try putInPlace(try prepare(path, fill: fill), at: path, directories: directories)
    }

    /// Renames `temporary` (written and synced by `prepare`) over `path`; on failure it is
    /// removed. The directory is synced at once, or remembered in `directories`.
    static func putInPlace(_ temporary: String, at path: String, directories: PendingDirectorySyncs?) throws {
        do {
            try PathOps.rename(temporary, to: path)
        } catch {
            PathOps.remove(temporary)
            throw error
        }
        try directories.renamed(into: PathOps.dirname(path))
    }

    /// Writes a new version of `path` into a temporary file beside it and fsyncs it (unless
    /// `sync` is false: the caller then puts it in place with `putInPlace`), without renaming: for
    /// writers that put several files in place only once all are ready.
    /// - Returns: the temporary file's path; on failure it is removed.
    static func prepare(_ path: String, sync: Bool = true, fill: (OpenFile) throws -> Void) throws -> String {
        let temporary = temporaryPath(for: path)
        do {
            let file = try OpenFile.createNew(temporary, like: path)
            try fill(file)
            if sync { try file.sync() } else { file.startWriteback() }
        } catch {
            PathOps.remove(temporary)
            throw error
        }
        return temporary
    }

    /// Puts files written with `prepare(_:sync: false)` in place: fsyncs every one, then renames
    /// each over its final path, then syncs their directories. Syncing many files after all were
    /// written costs about one journal commit instead of one per file (their writeback started
    /// when they were written, in the same transaction, which the first fsync commits).
    /// `beforeRenames` runs once every file is synced, before the first rename (a failure there
    /// renames nothing). On failure every temporary file not yet renamed is removed; the ones
    /// before stay in place.
    static func putInPlace(_ prepared: [(temporary: String, final: String)], beforeRenames: () throws -> Void = {}) throws {
        do {
            for (temporary, _) in prepared {
                guard let file = try OpenFile.openIfExists(temporary) else {
                    throw FormatError(.notFound, path: temporary, "temporary file vanished before it was synced")
                }
                try file.sync()
            }
            try beforeRenames()
        } catch {
            prepared.forEach { PathOps.remove($0.temporary) }
            throw error
        }
        for (i, (temporary, final)) in prepared.enumerated() {
            do {
                try PathOps.rename(temporary, to: final)
            } catch {
                prepared[i...].forEach { PathOps.remove($0.temporary) }
                throw error
            }
        }
        for directory in Set(prepared.map { PathOps.dirname($0.final) }) { try PathOps.syncDirectoryOrThrow(directory) }
    }
}
