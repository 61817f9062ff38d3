import Synchronization
import WKW

/// Everything the mounted view shows, by what it is rather than by path.
enum MountNode: Hashable, Sendable {
    case root
    /// `datasource-properties.json`.
    case properties
    /// `LAYER`: a directory, or a symbolic link to `.wkfs/links/LAYER` for linked layers.
    case layer(String)
    /// `.wkfs/links/LAYER`: the target of a linked layer.
    case linkTarget(String)
    /// A mag directory, by layer and directory name.
    case mag(layer: String, mag: String)
    /// The read-only `mag.json` of a mag.
    case magInfo(layer: String, mag: String)
    case zDirectory(layer: String, mag: String, z: Int)
    case yDirectory(layer: String, mag: String, z: Int, y: Int)
    /// `z{Z}/y{Y}/x{X}.raw`: the decoded voxels of one WKW file.
    case cube(layer: String, mag: String, index: Vec3)
    /// `.wkfs`, `.wkfs/errors`, `.wkfs/links`, `.wkfs/stats`.
    case control, errors, links, stats
    /// An editor's temporary or backup file in the mount root, kept in memory only.
    case scratch(String)

    static let controlName = ".wkfs"
}

/// Stable inode numbers for nodes, handed out on first sight and kept for the mount's life.
final class InodeTable: Sendable {
    private struct Tables {
        var byNode: [MountNode: UInt64] = [.root: 1]
        var byInode: [UInt64: MountNode] = [1: .root]
        var next: UInt64 = 2
    }
    private let tables = Mutex(Tables())

    func inode(_ node: MountNode) -> Inode {
        tables.withLock { t in
            if let known = t.byNode[node] { return Inode(known) }
            let number = t.next
            t.next += 1
            t.byNode[node] = number
            t.byInode[number] = node
            return Inode(number)
        }
    }

    func node(_ inode: Inode) -> MountNode? {
        tables.withLock { $0.byInode[inode.rawValue] }
    }

    /// After a rename the kernel keeps the source's inode under the new name: that inode now
    /// means `new`, and `old` gets a fresh inode when it is next seen.
    func rename(_ old: MountNode, to new: MountNode) {
        tables.withLock { t in
            guard let number = t.byNode.removeValue(forKey: old) else { return }
            t.byInode[number] = new
            t.byNode[new] = number
        }
    }
}

/// Recent errors, for `.wkfs/errors` and the log.
final class ErrorLog: Sendable {
    private let lines = Mutex<[String]>([])
    private let log: @Sendable (String) -> Void
    static let keep = 200

    init(log: @escaping @Sendable (String) -> Void) { self.log = log }

    func record(_ message: String) {
        log("wkfs: \(message)")
        lines.withLock { lines in
            lines.append(message)
            if lines.count > Self.keep { lines.removeFirst(lines.count - Self.keep) }
        }
    }

    /// A note for the log only (not an error).
    func note(_ message: String) { log("wkfs: \(message)") }

    var text: [UInt8] { Array(lines.withLock { $0.map { $0 + "\n" }.joined() }.utf8) }
}
