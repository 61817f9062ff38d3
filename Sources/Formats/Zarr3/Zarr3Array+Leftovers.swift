#if canImport(Glibc)
    import Glibc
#endif

/// What a killed writer leaves in a Zarr3 array: temporary files (a shard, chunk or `zarr.json`
/// not yet renamed into place). Shards are never patched in place, so there are no journals.
extension Zarr3Array {
    public func leftovers() throws -> (temporaries: [String], journals: [Vec3]) {
        var temporaries: [String] = []
        func walk(_ directory: String) throws {
            for name in try PathOps.listOrThrow(directory) {
                let child = directory + "/" + name
                if AtomicFile.temporaryOwner(name) != nil {
                    temporaries.append(child)
                } else if name == "c" || Int(name) != nil, PathOps.isDirectory(child), FileStatus.of(child)?.isSymbolicLink != true {
                    try walk(child)
                }
            }
        }
        try walk(path)
        return (temporaries.sorted(), [])
    }

    public func rollBackInterruptedWrites(_ indices: [Vec3]) throws -> [String] { [] }

    public func journalPath(_ index: Vec3) -> String { filePath(index) }

    /// The data file a temporary file stands for (`KEY.PID-R.tmp` beside the key's file).
    public func dataFileIndex(ofTemporary file: String) -> Vec3? {
        guard let dot = file.lastIndex(of: ".") else { return nil }
        let withoutTag = file[..<dot]
        guard let second = withoutTag.lastIndex(of: ".") else { return nil }
        let dataFile = String(withoutTag[..<second])
        return try? dataFiles().first { filePath($0) == dataFile }
    }

    /// Takes the locks of data files `indices` only when no one holds any of them.
    public func tryLockFiles(_ indices: [Vec3]) throws -> MagLock? {
        guard !indices.isEmpty, PathOps.exists(lockFilePath) else { return MagLock(nil) }
        return try FileLock.lock(lockFilePath, ranges: MagDirectory.lockRanges(indices), exclusive: true, wait: false).map(MagLock.init)
    }
}
