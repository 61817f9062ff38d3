/// An unnamed file for spilling data that does not fit in memory; it disappears when closed.
public final class TemporaryFile: Sendable {
    private let file: OpenFile

    /// Creates the file in `directory` (on the same file system as the data) and unlinks its name at once.
    public init(directory: String) throws {
        let path = "\(directory)/.wkfs-spill-\(UInt64.random(in: 0...UInt64.max))"
        file = try OpenFile.createNew(path)
        PathOps.remove(path)
    }

    public func write(at offset: Int, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try file.write(at: offset, $0) }
    }

    public func read(at offset: Int, count: Int) throws -> [UInt8] {
        try file.read(at: offset, count: count)
    }
}
