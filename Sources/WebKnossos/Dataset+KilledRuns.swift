import Formats

/// What a killed `add-layer` or `add-mag` leaves: its directory, made before the properties
/// named it, holding at most temporary files of the killed process. A new run of the same step
/// must not find it in its way ("already exists") when it holds nothing of anyone's.
extension Dataset {
    /// Removes `directory` when it holds nothing but empty directories, lock files and
    /// temporary files whose process no longer runs; true when it is gone (or was never there).
    /// A directory holding anything else (a mag's marker, a data file) stays, and false says so.
    static func removeIfLeftOfKilledRun(_ directory: String) -> Bool {
        guard PathOps.exists(directory) else { return true }
        guard onlyLeftoversIn(directory) else { return false }
        do {
            try PathOps.removeTree(directory)
        } catch {
            return false
        }
        return true
    }

    private static func onlyLeftoversIn(_ directory: String) -> Bool {
        guard PathOps.isDirectory(directory) else { return false }
        return PathOps.list(directory).allSatisfy { name in
            let child = directory + "/" + name
            if PathOps.isDirectory(child) { return onlyLeftoversIn(child) }
            if name == Zarr3Array.lockFileName { return true }
            return AtomicFile.temporaryOwner(name).map { !AtomicFile.processRuns($0) } ?? false
        }
    }
}
