import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Directories that a file was renamed into and that still need an fsync to make the rename
/// durable.
///
/// A writer that replaces many files one after another (the mount: one per closed cube) collects
/// the directories here and syncs each once when asked (fsync, unmount), instead of after every
/// file. Each new file is complete and fsynced before its rename, so a crash still leaves either
/// the old or the new file; only a rename not yet synced may come back as the old file.
public final class PendingDirectorySyncs: Sendable {
    /// Directory -> how many renames went into it (a directory stays pending until a sync that
    /// started after its last rename succeeded).
    private let directories = Mutex<[String: Int]>([:])

    public init() {}

    /// Remembers that an entry of `directory` changed.
    public func add(_ directory: String) {
        directories.withLock { $0[directory, default: 0] += 1 }
    }

    /// How many directories wait for their sync.
    public var count: Int { directories.withLock { $0.count } }

    /// Syncs every remembered directory. One that fails stays pending.
    /// - Throws: `FormatError` naming the first directory that could not be synced.
    public func syncAll() throws {
        let pending = directories.withLock { $0 }
        var failure: FormatError?
        for (directory, renames) in pending {
            do {
                try PathOps.syncDirectoryOrThrow(directory)
            } catch let error as FormatError {
                failure = failure ?? error
                continue
            }
            // A rename made while this sync ran may not be covered: keep the directory then.
            directories.withLock { d in if d[directory] == renames { d[directory] = nil } }
        }
        if let failure { throw failure }
    }
}

extension PendingDirectorySyncs? {
    /// A rename into `directory` happened: sync it now (a failure is the caller's: the rename
    /// may not survive a crash), or remember it when syncs are deferred.
    func renamed(into directory: String) throws {
        if let self { self.add(directory) } else { try PathOps.syncDirectoryOrThrow(directory) }
    }
}
