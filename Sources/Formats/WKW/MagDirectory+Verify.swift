/// Full checks of stored data, for `wkfs check`.
extension MagDirectory {
    /// Checks one data file completely: header, jump table and every block.
    /// - Throws: `FormatError` naming the file and the first problem found.
    public func verifyFile(_ index: Vec3) throws {
        let path = filePath(index)
        guard let file = try OpenFile.openIfExists(path) else {
            throw FormatError(.notFound, path: path, "data file does not exist")
        }
        let layout = try DataFileLayout.read(file, magHeader: header)
        guard header.blockType.isCompressed else { return }
        let bytes = try file.read(at: 0, count: layout.fileSize)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: header.blockByteCount, alignment: 16)
        defer { scratch.deallocate() }
        try bytes.withUnsafeBytes { all in
            for n in 0..<header.blocksPerFile {
                let stored = UnsafeRawBufferPointer(rebasing: all[layout.range(ofBlock: n)])
                try layout.decode(block: n, stored: stored, into: scratch)
            }
        }
    }

    /// Copies data file `index` byte for byte to `destination` (a mag with an identical header).
    public func copyFile(_ index: Vec3, to destination: MagDirectory) throws {
        precondition(destination.header == header, "copyFile needs identical headers")
        guard let file = try OpenFile.openIfExists(filePath(index)) else { return }
        let layout = try DataFileLayout.read(file, magHeader: header)
        let bytes = try file.read(at: 0, count: layout.fileSize)
        let target = destination.filePath(index)
        try PathOps.makeDirectories(PathOps.dirname(target))
        try AtomicFile.write(target, bytes)
    }
}
