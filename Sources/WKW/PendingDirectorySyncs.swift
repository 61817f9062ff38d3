import Synchronization

/// Directories that a file was renamed into and that still need an fsync to make the rename
/// durable.
///
/// A writer that replaces many files one after another (the mount: one per closed cube) collects
/// the directories here and syncs each once when asked (fsync, unmount), instead of after every
/// file. Each new file is complete and fsynced before its rename, so a crash still leaves either
/// the old or the new file; only a rename not yet synced may come back as the old file.
public final class PendingDirectorySyncs: Sendable {
    private let directories = Mutex<Set<String>>([])

    public init() {}

    /// Remembers that an entry of `directory` changed.
    public func add(_ directory: String) {
        directories.withLock { _ = $0.insert(directory) }
    }

    /// How many directories wait for their sync.
    public var count: Int { directories.withLock { $0.count } }

    /// Syncs every remembered directory.
    public func syncAll() {
        let pending = directories.withLock { d in
            defer { d.removeAll() }
            return d
        }
        for directory in pending { PathOps.syncDirectory(directory) }
    }
}

extension PendingDirectorySyncs? {
    /// A rename into `directory` happened: sync it now, or remember it when syncs are deferred.
    func renamed(into directory: String) {
        if let self { self.add(directory) } else { PathOps.syncDirectory(directory) }
    }
}
