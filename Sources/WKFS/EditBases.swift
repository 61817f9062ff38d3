import Glibc

/// The properties texts each program's edit through the mount is made from. Editors save whole
/// files: a save made from a text that is no longer the file would undo what changed since (a
/// box another writer grew, a mag or layer another program added), so it is refused
/// (`Dataset.applyEdit(_:base:since:)`).
///
/// Per program: the text it read last (its save must be made from the file as it is), and the
/// text it read first since its last save (vim reads the file again for its backup copy just
/// before it writes an older buffer: a save that puts back what changed since that first read is
/// refused too). A shell's children read for it (`t=$(cat F); echo "$t" > F`), so a read counts
/// for the reader's parent too. A program that read nothing has the text any program read last.
struct EditBases {
    private struct Bases {
        var first: [UInt8]
        var last: [UInt8]
        /// A save was refused: the next read starts over (`first` too).
        var startOver = false
        var stamp: Int
    }

    private var byProcess: [Int32: Bases] = [:]
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
        for p in [process, parent].compactMap({ $0 }) {
            if var bases = byProcess[p], !bases.startOver {
                bases.last = text
                byProcess[p] = bases
            } else {
                remember(p, text)
            }
        }
    }

    /// What a save by `process` is made from: the text it read last, and the one it read first.
    func bases(of process: Int32?, parent: Int32?) -> (last: [UInt8]?, first: [UInt8]?) {
        if let bases = process.flatMap({ byProcess[$0] }) ?? parent.flatMap({ byProcess[$0] }) { return (bases.last, bases.first) }
        return (lastRead, nil)
    }

    /// `process` saved `text`: its next edit (and its parent's) is made from it.
    mutating func saved(_ text: [UInt8], by process: Int32?, parent: Int32?) {
        lastRead = text
        for p in [process, parent].compactMap({ $0 }) { remember(p, text) }
    }

    /// A save by `process` was refused: its next read gives its new bases.
    mutating func refused(by process: Int32?, parent: Int32?) {
        for p in [process, parent].compactMap({ $0 }) { byProcess[p]?.startOver = true }
    }

    private mutating func remember(_ process: Int32, _ text: [UInt8]) {
        if byProcess[process] == nil && byProcess.count >= Self.capacity {
            byProcess = byProcess.filter { kill($0.key, 0) == 0 || errno == EPERM }
            if byProcess.count >= Self.capacity, let oldest = byProcess.min(by: { $0.value.stamp < $1.value.stamp }) {
                byProcess[oldest.key] = nil
            }
        }
        stamp += 1
        byProcess[process] = Bases(first: text, last: text, stamp: stamp)
    }
}
