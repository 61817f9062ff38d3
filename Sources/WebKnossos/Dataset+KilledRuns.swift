import Formats

/// What a killed `add-layer` or `add-mag` leaves: its directory, made before the properties
/// named it, holding temporary files of the killed process. A new run of the same step must
/// not find it in its way ("already exists") when it holds nothing of anyone's.
extension Dataset {
    /// Removes `directory` when a killed run left it: it holds a temporary file whose process no
    /// longer runs, and besides only such files, lock files and empty directories. True when it
    /// is gone (or was never there). A directory of a run under way (empty, or with its own
    /// temporary files) or holding anything else (a mag's marker, a data file) stays: false.
    /// Under the properties lock, so two runs that both find the leftover cannot both clear it
    /// (the second would remove what the first has made since).
    func removeIfLeftOfKilledRun(_ directory: String) throws -> Bool {
        guard PathOps.exists(directory) else { return true }
        return try withPropertiesLock {
            guard PathOps.exists(directory) else { return true }
            var killed = false
            guard onlyLeftovers(in: directory, killed: &killed), killed else { return false }
            do {
                try PathOps.removeTree(directory)
            } catch {
                return false
            }
            return true
        }
    }

    /// Why `directory` is in the way of a new layer or mag (`what`): an empty one (a run killed
    /// right after making it leaves no temporary file to tell it by) says how to go on.
    static func inTheWay(_ directory: String, _ what: String) -> String {
        func holdsFiles(_ path: String) -> Bool {
            PathOps.list(path).contains { name in
                PathOps.isDirectory(path + "/" + name) ? holdsFiles(path + "/" + name) : name != Zarr3Array.lockFileName
            }
        }
        guard PathOps.isDirectory(directory), !holdsFiles(directory) else { return "\(what) already exists on disk" }
        return "\(what) already exists on disk, holding no files, and the properties do not name it (left by an interrupted run?): remove it and run again"
    }

    private func onlyLeftovers(in directory: String, killed: inout Bool) -> Bool {
        guard PathOps.isDirectory(directory) else { return false }
        for name in PathOps.list(directory) {
            let child = directory + "/" + name
            if PathOps.isDirectory(child) {
                guard onlyLeftovers(in: child, killed: &killed) else { return false }
            } else if name != Zarr3Array.lockFileName {
                guard let owner = AtomicFile.temporaryOwner(name), !AtomicFile.processRuns(owner) else { return false }
                killed = true
            }
        }
        return true
    }
}
