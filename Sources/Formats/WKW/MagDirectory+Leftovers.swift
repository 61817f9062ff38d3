#if canImport(Glibc)
    import Glibc
#endif

/// What a writer that was killed leaves in a mag directory: temporary files (a new data file or
/// journal not yet renamed into place) and undo journals of in-place patches (see `UndoJournal`).
/// Only names that wkfs itself makes are ever touched.
extension MagDirectory {
    /// Temporary files in this mag (the root and its `z*/y*` rows), and the data files that
    /// have an undo journal (`UndoJournal`) beside them.
    /// - Throws: `FormatError` when a directory cannot be listed.
    public func leftovers() throws -> (temporaries: [String], journals: [Vec3]) {
        var temporaries: [String] = []
        var journals: [Vec3] = []
        for name in try PathOps.listOrThrow(path) {
            if AtomicFile.temporaryOwner(name) != nil {
                temporaries.append(path + "/" + name)
            } else if let z = GridName.index(name, "z"), PathOps.isDirectory(path + "/" + name) {
                for yName in try PathOps.listOrThrow(path + "/" + name) {
                    guard let y = GridName.index(yName, "y") else { continue }
                    let row = path + "/" + name + "/" + yName
                    guard PathOps.isDirectory(row) else { continue }
                    for xName in try PathOps.listOrThrow(row) {
                        if AtomicFile.temporaryOwner(xName) != nil {
                            temporaries.append(row + "/" + xName)
                        } else if let x = GridName.index(xName, "x", ".wkw" + UndoJournal.suffix) {
                            journals.append(Vec3(x, y, z))
                        }
                    }
                }
            }
        }
        return (temporaries.sorted(), journals)
    }

    /// The data file a temporary file in a row stands for (`zZ/yY/xX.wkw[.wkfs-undo].PID-R.tmp`).
    public func dataFileIndex(ofTemporary file: String) -> Vec3? {
        let parts = file.dropFirst(path.count + 1).split(separator: "/").map(String.init)
        guard parts.count == 3, let z = GridName.index(parts[0], "z"), let y = GridName.index(parts[1], "y"),
            let dot = parts[2].firstIndex(of: "."), let x = GridName.index(String(parts[2][..<dot]), "x")
        else { return nil }
        return Vec3(x, y, z)
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
