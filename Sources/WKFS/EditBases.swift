import Glibc

/// The properties text each program's edit through the mount is made from. Editors save whole
/// files: a save made from a text that is no longer the file would undo what changed since (a
/// box another writer grew, a mag or layer another program added), so it is refused
/// (`Dataset.applyEdit(_:base:)`).
///
/// A program's base is the first text it read since its last save (or refused save): vim reads
/// the file again just before it overwrites it (its backup copy), which must not make an old
/// buffer new. A shell's children read for it (`t=$(cat F); echo "$t" > F`), so a read counts
/// for the reader's parent too. A program that read nothing has the text any program read last.
struct EditBases {
    private struct Base {
        var text: [UInt8]
        /// Later reads do not replace it until the program saves or is refused.
        var held: Bool
        var stamp: Int
    }

    private var byProcess: [Int32: Base] = [:]
    private var stamp = 0
    /// The text any program read last (at first, the file as the mount started).
    private var lastRead: [UInt8]?
    /// Programs remembered at most (a few edit at once; the gone ones go first).
    private static let capacity = 64

    init(fileAtStart: [UInt8]?) {
        lastRead = fileAtStart
    }

    /// `process` (and so its `parent`) read `text`.
    mutating func read(_ text: [UInt8], by process: Int32?, parent: Int32?) {
        lastRead = text
        for p in [process, parent].compactMap({ $0 }) where byProcess[p]?.held != true {
            remember(p, text)
        }
    }

    /// What a save by `process` is made from.
    func base(of process: Int32?, parent: Int32?) -> [UInt8]? {
        process.flatMap { byProcess[$0]?.text } ?? parent.flatMap { byProcess[$0]?.text } ?? lastRead
    }

    /// `process` saved `text`: its next edit (and its parent's) is made from it.
    mutating func saved(_ text: [UInt8], by process: Int32?, parent: Int32?) {
        lastRead = text
        for p in [process, parent].compactMap({ $0 }) { remember(p, text) }
    }

    /// A save by `process` was refused: its next read gives its new base.
    mutating func refused(by process: Int32?, parent: Int32?) {
        for p in [process, parent].compactMap({ $0 }) { byProcess[p]?.held = false }
    }

    private mutating func remember(_ process: Int32, _ text: [UInt8]) {
        if byProcess[process] == nil && byProcess.count >= Self.capacity {
            byProcess = byProcess.filter { kill($0.key, 0) == 0 || errno == EPERM }
            if byProcess.count >= Self.capacity, let oldest = byProcess.min(by: { $0.value.stamp < $1.value.stamp }) {
                byProcess[oldest.key] = nil
            }
        }
        stamp += 1
        byProcess[process] = Base(text: text, held: true, stamp: stamp)
    }
}
