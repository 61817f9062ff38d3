#if canImport(Glibc)
    import Glibc
#endif

/// What a writer that was killed leaves in a mag directory: temporary files (a new data file or
/// journal not yet renamed into place) and undo journals of in-place patches (see `UndoJournal`).
/// Only names that wkfs itself makes are ever touched.
extension MagDirectory {
    /// Temporary files in this mag (the root and its `z*/y*` rows), and undo journals.
    /// - Throws: `WKWError` when a directory cannot be listed.
    public func leftovers() throws -> (temporaries: [String], journals: [String]) {
        var temporaries: [String] = []
        var journals: [String] = []
        for name in try PathOps.listOrThrow(path) {
            if AtomicFile.temporaryOwner(name) != nil {
                temporaries.append(path + "/" + name)
            } else if UndoJournal.isJournalName(name) {
                journals.append(path + "/" + name)
            } else if Self.nameIndex(name, "z") != nil, PathOps.isDirectory(path + "/" + name) {
                for yName in try PathOps.listOrThrow(path + "/" + name) where Self.nameIndex(yName, "y") != nil {
                    let row = path + "/" + name + "/" + yName
                    guard PathOps.isDirectory(row) else { continue }
                    for xName in try PathOps.listOrThrow(row) where AtomicFile.temporaryOwner(xName) != nil {
                        temporaries.append(row + "/" + xName)
                    }
                }
            }
        }
        return (temporaries.sorted(), journals.sorted())
    }

    /// Removes the temporary files whose writer is gone: its process (named in the file's name)
    /// no longer runs on this machine. A writer on another machine sharing the storage cannot be
    /// seen this way; run the repair when no writer runs elsewhere.
    /// - Returns: the paths removed.
    public func removeStaleTemporaries() throws -> [String] {
        var removed: [String] = []
        for file in try leftovers().temporaries {
            let name = String(file[file.index(after: file.lastIndex(of: "/")!)...])
            guard let owner = AtomicFile.temporaryOwner(name), !AtomicFile.processRuns(owner) else { continue }
            if unlink(file) == 0 { removed.append(file) }
        }
        return removed
    }
}

extension AtomicFile {
    /// The process id in a temporary file's name (`NAME.PID-RANDOM.tmp`); nil for other names.
    public static func temporaryOwner(_ name: String) -> Int32? {
        guard name.hasSuffix(".tmp") else { return nil }
        let parts = name.dropLast(4).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return nil }
        let tag = parts[parts.count - 1].split(separator: "-", omittingEmptySubsequences: false)
        guard tag.count == 2, let pid = Int32(tag[0]), pid > 0, UInt32(tag[1]) != nil,
            tag.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } })
        else { return nil }
        return pid
    }

    /// Whether process `pid` runs on this machine (signal 0 checks without sending anything).
    public static func processRuns(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }
}
