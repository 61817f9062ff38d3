import Synchronization
import Formats

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
    /// `z{Z}/y{Y}/x{X}.raw`: the decoded voxels of one data file (WKW file, Zarr3 shard).
    case cube(layer: String, mag: String, index: Vec3)
    /// `z{Z}/y{Y}/x{X}.nhdr`: the NRRD header of a cube.
    case cubeHeader(layer: String, mag: String, index: Vec3)
    /// `volume.raw`: the mag's bounding box as one array; `volume.nhdr` its NRRD header.
    case volume(layer: String, mag: String)
    case volumeHeader(layer: String, mag: String)
    /// `slices/` and its `z{N}.tif`, one TIFF per z plane of the bounding box (`z` from its start).
    case slices(layer: String, mag: String)
    case slice(layer: String, mag: String, z: Int)
    /// `.wkfs`, `.wkfs/errors`, `.wkfs/links`, `.wkfs/stats`.
    case control, errors, links, stats
    /// An editor's temporary or backup file in the mount root, kept in memory only.
    case scratch(String)

    static let controlName = ".wkfs"
    static let volumeName = "volume.raw"
    static let volumeHeaderName = "volume.nhdr"
    static let slicesName = "slices"
}

/// Inode numbers for nodes. A node's number is derived from what it is (a hash), so listings
/// can show numbers without keeping anything; only the numbers the kernel holds are kept, with
/// how many lookups it counts (`remember`), and dropped when it forgets them all (`forget`): a
/// walk over a million cubes does not keep a million entries.
///
/// A node may also have versions (a cube: the identity of its data file on disk). A number
/// stands for the version it was handed out with; when another version is remembered, the node
/// gets a new number and the old one is retired: it keeps meaning the node for the kernel's
/// open files of it (their pages are the old version's), but is never handed out again. That is
/// how a file replaced on disk by another program keeps serving its old content to the
/// programs that had it open, as a local file replaced by rename does.
final class InodeTable<Node: Hashable & Sendable>: Sendable {
    private struct Tables {
        /// Nodes the kernel knows, by number.
        var byInode: [UInt64: Node]
        /// Numbers that are not the node's own hash: after a rename, or to step past a collision.
        var moved: [Node: UInt64] = [:]
        var lookups: [UInt64: UInt64] = [:]
        /// The version each number stands for (only for nodes that have versions).
        var versions: [UInt64: [Int64]] = [:]
        /// Numbers of old versions: still known to the kernel, never handed out again.
        var retired: Set<UInt64> = []
    }
    private let tables: Mutex<Tables>
    /// The root directory's node: inode 1.
    let root: Node

    init(root: Node) {
        self.root = root
        tables = Mutex(Tables(byInode: [1: root]))
    }

    /// The number of `node`.
    func inode(_ node: Node) -> Inode {
        tables.withLock { t in Inode(number(node, in: &t)) }
    }

    private func number(_ node: Node, in t: inout Tables) -> UInt64 {
        if node == root { return 1 }
        if let moved = t.moved[node] { return moved }
        return unused(from: hash(node), for: node, in: &t)
    }

    /// `start`, or the first number after it that no other node (nor a retired version of this
    /// one) holds (a 63-bit hash: a collision practically never happens).
    private func unused(from start: UInt64, for node: Node, in t: inout Tables) -> UInt64 {
        var number = start
        while let other = t.byInode[number], other != node || t.retired.contains(number) {
            number = number == UInt64.max >> 1 ? 2 : number + 1
            t.moved[node] = number
        }
        return number
    }

    /// A hash of the node in 2 ..< 2^63 (Swift's hasher: the same all through one process,
    /// which is as long as a mount's numbers must last).
    private func hash(_ node: Node) -> UInt64 {
        max(2, UInt64(bitPattern: Int64(node.hashValue)) >> 1)
    }

    func node(_ inode: Inode) -> Node? {
        tables.withLock { $0.byInode[inode.rawValue] }
    }

    /// The number of `node` if the kernel knows it; nil otherwise.
    func knownInode(_ node: Node) -> Inode? {
        tables.withLock { t in
            let number = number(node, in: &t)
            return t.byInode[number] == node ? Inode(number) : nil
        }
    }

    /// Counts one lookup of `node` by the kernel (an entry replied to lookup, create, mkdir or
    /// symlink) and returns its number, in one step: a FORGET of the same number in between
    /// cannot drop what this reply hands out.
    func remember(_ node: Node) -> Inode {
        tables.withLock { t in
            let number = number(node, in: &t)
            t.byInode[number] = node
            t.lookups[number, default: 0] += 1
            return Inode(number)
        }
    }

    /// As `remember`, for `version` of the node: when the kernel knows the node's number with
    /// another version, that number is retired and the node gets a new one.
    func remember(_ node: Node, version: [Int64]) -> Inode {
        tables.withLock { t in
            var number = number(node, in: &t)
            if let known = t.versions[number], known != version, t.byInode[number] == node {
                retire(number, of: node, in: &t)
                number = self.number(node, in: &t)
            }
            t.byInode[number] = node
            t.lookups[number, default: 0] += 1
            t.versions[number] = version
            return Inode(number)
        }
    }

    /// The version `inode` stands for (nil: none recorded).
    func version(_ inode: Inode) -> [Int64]? {
        tables.withLock { t in t.versions[inode.rawValue] }
    }

    /// `inode` now stands for `version` (its node was changed through it, or it was opened
    /// again when nothing had it open).
    func setVersion(_ inode: Inode, _ version: [Int64]) {
        tables.withLock { t in
            guard t.byInode[inode.rawValue] != nil else { return }
            t.versions[inode.rawValue] = version
        }
    }

    private func retire(_ number: UInt64, of node: Node, in t: inout Tables) {
        t.retired.insert(number)
        t.moved[node] = unused(from: number == UInt64.max >> 1 ? 2 : number + 1, for: node, in: &t)
    }

    /// The kernel forgot `count` lookups of `inode`; at none left, the number is dropped.
    func forget(_ inode: Inode, _ count: UInt64) {
        guard inode != .root else { return }
        tables.withLock { t in
            let held = t.lookups[inode.rawValue] ?? 0
            guard held > count else {
                t.lookups[inode.rawValue] = nil
                t.versions[inode.rawValue] = nil
                t.retired.remove(inode.rawValue)
                if let node = t.byInode.removeValue(forKey: inode.rawValue), t.moved[node] == inode.rawValue {
                    t.moved[node] = nil
                }
                return
            }
            t.lookups[inode.rawValue] = held - count
        }
    }

    /// After a rename the kernel keeps the source's inode under the new name: that number now
    /// means `new`, and `old` gets its own number again.
    func rename(_ old: Node, to new: Node) {
        tables.withLock { t in
            let number = number(old, in: &t)
            t.moved[old] = nil
            t.moved[new] = number
            if t.byInode[number] != nil { t.byInode[number] = new }
        }
    }

    /// How many numbers the kernel holds.
    var count: Int { tables.withLock { $0.byInode.count } }
}

/// Recent errors, for `.wkfs/errors` and the log.
final class ErrorLog: Sendable {
    /// The recent lines, and when the last was recorded (the mount's start before any):
    /// `.wkfs/errors`'s modification time.
    private let recent = Mutex<(lines: [String], modified: Timestamp)>(([], .now))
    private let log: @Sendable (String) -> Void
    static let keep = 200

    init(log: @escaping @Sendable (String) -> Void) { self.log = log }

    func record(_ message: String) {
        log("wkfs: \(message)")
        recent.withLock { recent in
            recent.lines.append(message)
            if recent.lines.count > Self.keep { recent.lines.removeFirst(recent.lines.count - Self.keep) }
            recent.modified = .now
        }
    }

    var modified: Timestamp { recent.withLock { $0.modified } }

    /// A note for the log only (not an error).
    func note(_ message: String) { log("wkfs: \(message)") }

    var text: [UInt8] { Array(recent.withLock { $0.lines.map { $0 + "\n" }.joined() }.utf8) }
}

extension MountNode: CustomStringConvertible {
    /// The node's path in the view, for messages.
    var description: String {
        switch self {
        case .root: "/"
        case .properties: "datasource-properties.json"
        case .layer(let name): name
        case .linkTarget(let name): "\(Self.controlName)/links/\(name)"
        case .mag(let layer, let mag): "\(layer)/\(mag)"
        case .magInfo(let layer, let mag): "\(layer)/\(mag)/mag.json"
        case .zDirectory(let layer, let mag, let z): "\(layer)/\(mag)/z\(z)"
        case .yDirectory(let layer, let mag, let z, let y): "\(layer)/\(mag)/z\(z)/y\(y)"
        case .cube(let layer, let mag, let i): "\(layer)/\(mag)/z\(i.z)/y\(i.y)/x\(i.x).raw"
        case .cubeHeader(let layer, let mag, let i): "\(layer)/\(mag)/z\(i.z)/y\(i.y)/x\(i.x).nhdr"
        case .volume(let layer, let mag): "\(layer)/\(mag)/\(Self.volumeName)"
        case .volumeHeader(let layer, let mag): "\(layer)/\(mag)/\(Self.volumeHeaderName)"
        case .slices(let layer, let mag): "\(layer)/\(mag)/\(Self.slicesName)"
        case .slice(let layer, let mag, let z): "\(layer)/\(mag)/\(Self.slicesName)/z\(z).tif"
        case .control: Self.controlName
        case .errors: "\(Self.controlName)/errors"
        case .links: "\(Self.controlName)/links"
        case .stats: "\(Self.controlName)/stats"
        case .scratch(let name): name
        }
    }
}
