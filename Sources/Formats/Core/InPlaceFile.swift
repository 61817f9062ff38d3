/// A new version of one data file whose blocks have fixed places (a raw WKW file): complete
/// blocks are written straight to their places in any order, so a writer holds no copy of them.
/// It replaces the data file at `finish`; `abandon` drops it.
public protocol InPlaceFile: AnyObject, Sendable {
    /// Writes decoded block `n` at its place.
    func writeBlock(_ n: Int, _ decoded: [UInt8]) throws
    /// Reads back block `n` as written so far.
    func readBlock(_ n: Int) throws -> [UInt8]
    /// Writes every block `source` gives (nil: already written), makes the file durable and
    /// renames it over the data file (the rename made durable at once, or through `directories`).
    /// On failure the new file stays as written so far: call `abandon`.
    func finish(directories: PendingDirectorySyncs?, _ source: @Sendable (Int) throws -> BlockSource?) throws
    /// Removes the new file.
    func abandon()
}
