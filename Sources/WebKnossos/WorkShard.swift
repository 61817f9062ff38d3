import Formats

/// One of N disjoint parts of a job (`--shard I/N`): N processes, on one machine or many over
/// shared storage, each doing its own part, together do the whole job with no coordination.
/// Work is split by data file: the part of file number k (in z, y, x order) is k mod N.
public struct WorkShard: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    /// The whole job.
    public static let whole = WorkShard(uncheckedIndex: 0, count: 1)

    /// - Throws: `DatasetError` unless `0 <= index < count`.
    public init(index: Int, count: Int) throws {
        guard count >= 1, index >= 0, index < count else {
            throw DatasetError(.invalidArgument, "shard \(index)/\(count)", "expected I/N with N >= 1 and 0 <= I < N")
        }
        self.index = index
        self.count = count
    }

    private init(uncheckedIndex index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    public var isWhole: Bool { count == 1 }
    public var description: String { "\(index)/\(count)" }

    /// This part's items of `items` (ordered the same way in every process).
    public func part<T>(of items: [T]) -> [T] {
        guard count > 1 else { return items }
        return items.enumerated().filter { $0.offset % count == index }.map(\.element)
    }
}

/// The notes the parts of a split job leave when done: part I of N writes the empty file
/// `prefix + "I-of-N"`; the part that finds all N notes finishes the job (under whatever lock
/// that job's end needs, which is why the check is its own step).
extension WorkShard {
    /// The note of part `part` of this split.
    func notePath(_ prefix: String, part: Int) -> String { prefix + "\(part)-of-\(count)" }

    /// Leaves this part's note.
    /// - Throws: `DatasetError` naming the note when it cannot be written.
    func leaveNote(_ prefix: String, _ what: String) throws {
        let path = notePath(prefix, part: index)
        do {
            try AtomicFile.write(path, [])
        } catch {
            throw DatasetError(.io, path, "cannot note \(what) as done", cause: error)
        }
    }

    /// Whether every part of this split left its note.
    func everyPartNoted(_ prefix: String) -> Bool {
        (0..<count).allSatisfy { PathOps.exists(notePath(prefix, part: $0)) }
    }
}
