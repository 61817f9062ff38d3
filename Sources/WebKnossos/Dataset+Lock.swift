import Formats

/// Changes of `datasource-properties.json` are serialized across threads, processes and mounts:
/// each one takes the dataset's properties lock, reads the file again, applies its change to what
/// is on disk now and saves, so two writers that grow the bounding box (or add layers) at once
/// both keep their change. The lock is on the dataset's directory (the properties file itself is
/// replaced at every save, so it cannot carry a lock); on NFS, on `.wkfs.lock` in it.
extension Dataset {
    static let lockFileName = ".wkfs.lock"

    /// Waits for the dataset's properties lock.
    func propertiesLock() throws -> DirectoryLock {
        do {
            return try DirectoryLock(path, fallbackName: Self.lockFileName)
        } catch {
            throw DatasetError(.io, path, "cannot take the properties lock", cause: error)
        }
    }

    /// Applies `change` to the properties as they are on disk now and saves them, holding the
    /// properties lock; `self` then holds the saved properties.
    /// Runs `body` holding the dataset's properties lock.
    func withPropertiesLock<T>(_ body: () throws -> T) throws -> T {
        let lock = try propertiesLock()
        defer { lock.unlock() }
        return try body()
    }

    public mutating func modifyProperties(_ change: (inout DatasetProperties) throws -> Void) throws {
        let lock = try propertiesLock()
        defer { lock.unlock() }
        try modifyPropertiesHoldingLock(change)
    }

    /// `modifyProperties` for a caller that holds the properties lock already (the lock is not
    /// reentrant: taking it again would wait forever).
    mutating func modifyPropertiesHoldingLock(_ change: (inout DatasetProperties) throws -> Void) throws {
        let onDisk = try Dataset.open(path).properties
        var changed = onDisk
        try change(&changed)
        properties = changed
        do {
            try save()
        } catch {
            // Not saved (a full disk): the dataset in memory stays what the file still says.
            properties = onDisk
            throw error
        }
    }
}
