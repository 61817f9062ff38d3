/// A new version of one raw data file, written block by block at the blocks' fixed places in a
/// temporary file beside it, then completed, fsynced and renamed over the old file.
/// Blocks need not arrive in order, so a cube written slab by slab needs no staging copy.
public final class PendingRawFile: Sendable {
    public let mag: MagDirectory
    public let index: Vec3
    private let temporary: String
    private let file: OpenFile

    /// Creates the temporary file (header, full length, sparse).
    public init(mag: MagDirectory, index: Vec3) throws {
        precondition(!mag.header.blockType.isCompressed, "PendingRawFile is for raw mags")
        self.mag = mag
        self.index = index
        let path = mag.filePath(index)
        try PathOps.makeDirectories(PathOps.dirname(path))
        temporary = AtomicFile.temporaryPath(for: path)
        file = try OpenFile.createNew(temporary, like: path)
        do {
            let header = mag.header
            try header.encoded(dataOffset: header.dataFileDataOffset).withUnsafeBytes { try file.write(at: 0, $0) }
            try file.resize(to: header.rawFileLength)
        } catch {
            PathOps.remove(temporary)
            throw error
        }
    }

    private func offset(_ n: Int) -> Int { WKWHeader.byteCount + n * mag.header.blockByteCount }

    /// Writes decoded block `n` at its place.
    public func writeBlock(_ n: Int, _ decoded: [UInt8]) throws {
        try decoded.withUnsafeBytes { try file.write(at: offset(n), $0) }
    }

    /// Reads back block `n` as written so far.
    public func readBlock(_ n: Int) throws -> [UInt8] {
        try file.read(at: offset(n), count: mag.header.blockByteCount)
    }

    /// Writes every block `source` gives (nil: already written), fsyncs and renames the file over
    /// the data file (the rename made durable at once, or later through `directories`). On failure
    /// the temporary file stays, as written so far: call `abandon`.
    public func finish(directories: PendingDirectorySyncs? = nil, _ source: @Sendable (Int) throws -> BlockSource?) throws {
        let header = mag.header
        let zero = [UInt8](repeating: 0, count: header.blockByteCount)
        try Parallel.forEach(header.blocksPerFile) { n in
            switch try source(n) {
            case .decoded(let bytes), .encoded(let bytes): try self.writeBlock(n, bytes)
            case .zero: try self.writeBlock(n, zero)  // it may hold an earlier version of the block
            case nil: break
            }
        }
        try file.sync()
        try PathOps.rename(temporary, to: mag.filePath(index))
        try directories.renamed(into: PathOps.dirname(mag.filePath(index)))
    }

    /// Removes the temporary file.
    public func abandon() {
        PathOps.remove(temporary)
    }
}
