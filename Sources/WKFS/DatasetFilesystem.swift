import Dispatch
import Foundation
import Synchronization
import Formats
import WebKnossos

/// The mounted view of one dataset (SPEC section 3): layers, mags, raw cubes, editable properties,
/// linked layers and the `.wkfs` control directory.
///
/// Shared state sits behind `state`; cube data moves outside that lock, through the block cache and
/// each open cube's own writer.
public final class DatasetFilesystem: FUSEFilesystem {
    public struct Options: Sendable {
        public var readOnly = false
        /// Bytes of decoded blocks kept for reads.
        public var cacheSize = 256 << 20
        /// Cubes opened read-only bypass the kernel's page cache: every read is a request served
        /// from the block cache, copied straight into the reader's buffer. Streaming large cubes
        /// is faster (no page-cache pages to fill), but such a handle cannot be mmapped (ENODEV)
        /// and small repeated reads each cost a request.
        public var directIO = false
        public init() {}
    }

    let options: Options
    let inodes = InodeTable<MountNode>(root: .root)
    let cache: BlockCache
    let prefetcher = DataFilePrefetcher()
    let statistics = MountStatistics()
    public var requestCounts: FUSERequestCounts? { statistics.requests }
    /// Directories of cubes replaced since the last fsync: synced at fsync, fsyncdir and unmount,
    /// not at every close (SPEC section 3: each file itself is fsynced before its rename).
    let pendingDirectories = PendingDirectorySyncs()
    let errors: ErrorLog
    let state: Mutex<ViewState>
    private let notifier = Mutex<FUSENotifier?>(nil)

    /// Opens the dataset; fails before anything is mounted when it does not open.
    public init(datasetPath: String, options: Options, log: @escaping @Sendable (String) -> Void) throws {
        self.options = options
        cache = BlockCache(cacheSize: options.cacheSize)
        errors = ErrorLog(log: log)
        var view = ViewState(dataset: try Dataset.open(datasetPath), readOnly: options.readOnly)
        view.editBases = EditBases(fileAtStart: FileManager.default.contents(atPath: view.dataset.propertiesPath).map { Array($0) })
        state = Mutex(view)
    }

    /// Removes the temporary files that killed writers left in the mags (their names say which
    /// process made them; a running one's stay), off the mount's threads: the walk lists every
    /// row of every mag. Interrupted in-place writes are rolled back when their file is first
    /// opened or locked (`MagStore.openDataFile`, `BlockWritableStore.lockFiles`).
    private func removeLeftoversInBackground() {
        let dataset = state.withLock { $0.dataset }
        let errors = self.errors
        DispatchQueue.global(qos: .utility).async {
            for layer in dataset.layers {
                for entry in layer.mags {
                    guard let format = layer.format, let mag = try? Dataset.openStore(format, dataset.magPath(layer, entry)) else { continue }
                    do {
                        for file in try mag.removeStaleTemporaries() { errors.note("removed \(file), left by an interrupted write") }
                    } catch {
                        errors.record("cleaning up after interrupted writes: \(error)")
                    }
                }
            }
        }
    }

    public func initialize(connection: inout FUSEConnection, notifier: FUSENotifier) {
        self.notifier.withLock { $0 = notifier }
        // Not before: a mount that daemonizes forks after `init`, and a thread running at the
        // fork (holding a lock of the allocator, the runtime or libdispatch) hung the server's
        // first reads.
        if !options.readOnly { removeLeftoversInBackground() }
        // O_TRUNC must reach `open` with its handle: a separate truncate carries none, and a cube
        // or the properties file cannot be truncated on disk on its own.
        connection.atomicOpenTruncate = true
    }

    // MARK: Helpers shared by the operation files

    /// The node behind an inode, or ENOENT.
    func node(_ inode: Inode) throws -> MountNode {
        guard let node = inodes.node(inode) else { throw FUSEError.noEntry }
        return node
    }

    /// Records a user-caused error in the log and `.wkfs/errors`, and returns it as an errno.
    func refuse(_ code: Int32, _ message: String) -> FUSEError {
        errors.record(message)
        return FUSEError(code, message)
    }

    /// Turns an error of a lower layer into an errno, recording it.
    func translate(_ error: any Error, _ what: String) -> FUSEError {
        if let fuse = error as? FUSEError {
            if let message = fuse.message { errors.record("\(what): \(message)") }
            return fuse
        }
        let code = Self.errorNumber(error)
        return refuse(code, "\(what): \(error)")
    }

    /// The errno a failed request answers with. An error that no operation explained (`translate`
    /// records those) is recorded here, so every failure a user meets is in `.wkfs/errors`;
    /// names that do not exist (ENOENT) are not failures worth a line.
    public func errorNumber(for error: any Error, operation: FUSEOperation) -> Int32 {
        let code = Self.errorNumber(error)
        if !(error is FUSEError) && code != ENOENT { errors.record("\(operation) failed: \(error)") }
        return code
    }

    /// The errno for an error of a lower layer: the one place that decides it. An error that
    /// keeps its cause answers with the cause's errno (a full disk stays ENOSPC).
    static func errorNumber(_ error: any Error) -> Int32 {
        switch error {
        case let e as FUSEError:
            return e.code
        case let e as FormatError:
            switch e.kind {
            case .io(let errno): return errno
            case .corrupt: return EIO
            case .invalidArgument: return EINVAL
            case .notFound: return ENOENT
            case .alreadyExists: return EEXIST
            case .changed: return EAGAIN
            }
        case let e as DatasetError:
            if let cause = e.cause { return errorNumber(cause) }
            switch e.kind {
            case .notFound: return ENOENT
            case .alreadyExists: return EEXIST
            case .invalidProperties, .invalidArgument: return EINVAL
            case .unsupported: return ENOTSUP
            case .io: return EIO
            case .conflict: return EAGAIN
            }
        default:
            return EIO
        }
    }

    func requireWritable() throws {
        if options.readOnly { throw FUSEError.readOnly }
    }

    /// Tells the kernel to drop what it caches for `inode` (and names under `parent`), off the
    /// request thread: notifying from inside a request on the same node can deadlock.
    /// Names in the root are never invalidated: they are not cached (`entryTimeout(parent:)`).
    func invalidate(_ inode: Inode?, entries: [(parent: Inode, name: String)] = []) {
        guard let notifier = notifier.withLock({ $0 }) else { return }
        let entries = entries.filter { $0.parent != .root }
        guard inode != nil || !entries.isEmpty else { return }
        DispatchQueue.global().async {
            if let inode { try? notifier.invalidateInode(inode) }
            for (parent, name) in entries { try? notifier.invalidateEntry(parent: parent, name: name) }
        }
    }

    /// The opened mag directory of a layer's mag (by directory name).
    /// The mag in whatever format it is.
    func magStore(_ layer: String, _ mag: String) throws -> any MagStore {
        try state.withLock { s in try s.magStore(layer, mag) }
    }

    /// Takes in what other programs changed in the properties file (`wkfs write` growing the
    /// bounding box, `wkfs add-mag`): `mag.json`, `volume.raw` and the listings follow the
    /// dataset in memory. One `stat` of the file per request that names or opens a file.
    func takeInPropertiesChanges() {
        let path = state.withLock { $0.dataset.propertiesPath }
        guard let identity = FileStatus.of(path)?.identity,
            state.withLock({ $0.propertiesIdentity != identity }),
            let fresh = try? Dataset.open(state.withLock { $0.dataset.path })
        else { return }
        let views = state.withLock { s -> [MountNode] in
            s.propertiesIdentity = identity
            // The mount's own changes are in memory already: the mags it opened stay.
            guard s.dataset.properties.encoded() != fresh.properties.encoded() else { return [] }
            s.dataset = fresh
            s.mags = [:]
            return s.layerNames.flatMap { layer in
                s.mags(layer).flatMap { mag in
                    [MountNode.magInfo(layer: layer, mag: mag.name), .volume(layer: layer, mag: mag.name), .volumeHeader(layer: layer, mag: mag.name)]
                }
            }
        }
        // The kernel drops what it kept of the files that state the box (their sizes, pages).
        for node in views {
            if let inode = inodes.knownInode(node) { invalidate(inode) }
        }
    }
}

/// The view's shared, mutable state.
struct ViewState {
    var dataset: Dataset
    /// A read-only mount: mags are opened so that nothing is written (`MagStore.refusingRepairs`).
    var readOnly = false
    /// Opened mags by (layer, directory name).
    var mags: [String: any MagStore] = [:]
    /// Editor files in the mount root, in memory only.
    var scratch: [String: ScratchFile] = [:]
    /// The properties file's identity (`FileStatus.identity`) when `dataset` was last compared
    /// with it (nil: not yet).
    var propertiesIdentity: [Int64]?
    /// What each program's edit of the properties through the mount is made from.
    var editBases = EditBases(fileAtStart: nil)
    /// The properties file was renamed away (an editor's backup) and not yet recreated.
    var propertiesHidden = false
    /// Cubes created and still open, not yet on disk: open count by node.
    var pendingCubes: [MountNode: Int] = [:]
    /// Open cubes by inode (a cube has one per version, `InodeTable`), each shared by all
    /// handles on it, with the number of those handles.
    var openCubes: [Inode: (cube: CubeHandle, handles: Int)] = [:]
    /// Cubes that a program waits to replace whole: new opens wait behind it, so readers in a
    /// loop cannot starve it (`DatasetFilesystem.openCube`).
    var replacementsWaiting: [MountNode: Int] = [:]
    /// Requests now waiting for a busy cube; each holds one of libfuse's worker threads.
    var busyWaiters = 0
    /// `zZ` and `yY` directories made through the mount in mags whose files are not kept in
    /// such directories on disk (Zarr3): they exist in the view only, until a cube fills them.
    var madeDirectories: Set<MountNode> = []
    var handles: [UInt64: OpenItem] = [:]
    /// Writes that a failed close of a handle dropped, by handle: the handle's next fsync or
    /// close fails with this (its other descriptors, a dup or a forked child's, may still write).
    var lostWrites: [UInt64: FUSEError] = [:]
    var nextHandle: UInt64 = 1

    /// The layers the view shows: WKW layers of the properties.
    var layerNames: [String] { dataset.layers.filter { $0.format != nil }.map(\.name) }

    func layer(_ name: String) -> LayerProperties? {
        dataset.properties.layer(named: name).flatMap { $0.format != nil ? $0 : nil }
    }

    func isLinked(_ layer: String) -> Bool {
        FileStatus.of(dataset.layerPath(layer))?.isSymbolicLink ?? false
    }

    /// The mags of a layer by directory name.
    func mags(_ layer: String) -> [(name: String, entry: MagProperties)] {
        guard let properties = self.layer(layer) else { return [] }
        return properties.mags.map { entry in
            let path = dataset.magPath(properties, entry)
            return (String(path.split(separator: "/").last ?? ""), entry)
        }
    }

    func magPath(_ layer: String, _ mag: String) -> String? {
        guard let properties = self.layer(layer), let entry = mags(layer).first(where: { $0.name == mag })?.entry else {
            return nil
        }
        return dataset.magPath(properties, entry)
    }

    mutating func magStore(_ layer: String, _ mag: String) throws -> any MagStore {
        let key = layer + "/" + mag
        if let known = mags[key] { return known }
        guard let path = magPath(layer, mag), let format = self.layer(layer)?.format else { throw FUSEError.noEntry }
        var store = try Dataset.openStore(format, path)
        // A read-only mount writes nothing, not even the rollback of a killed writer's patch.
        if readOnly { store = store.refusingRepairs() }
        mags[key] = store
        return store
    }

    /// The slice images of a mag: one per z plane of its volume (its layer's box snapped to the
    /// mag); none when a plane would not fit a (32-bit) TIFF. Nil for an unknown mag.
    mutating func slicePlanes(_ layer: String, _ mag: String) -> Int? {
        guard let properties = self.layer(layer), let entry = mags(layer).first(where: { $0.name == mag })?.entry else { return nil }
        let box = entry.mag.fromMag1(properties.boundingBox)
        guard let store = try? knownStore(layer, mag) else { return nil }
        let planeBytes = box.size.x.multipliedReportingOverflow(by: box.size.y * store.voxelBytes)
        return planeBytes.overflow || planeBytes.partialValue > Self.largestSlice ? 0 : box.size.z
    }

    /// Bytes of one slice image's pixels at most: TIFF's offsets are 32-bit.
    static let largestSlice = Int(UInt32.max) - (1 << 20)

    /// The mag (opened once and kept, as `magStore` does), or nil when the view has no such mag.
    /// - Throws: the format's error when the mag cannot be opened (a corrupt header).
    mutating func knownStore(_ layer: String, _ mag: String) throws -> (any MagStore)? {
        guard magPath(layer, mag) != nil, self.layer(layer)?.format != nil else { return nil }
        return try magStore(layer, mag)
    }

    mutating func addHandle(_ item: OpenItem) -> Handle {
        let number = nextHandle
        nextHandle += 1
        handles[number] = item
        return Handle(number)
    }
}

/// An editor's file in the mount root.
struct ScratchFile {
    var bytes: [UInt8]
    var modified: Timestamp
    /// A symbolic link (an editor's lock) whose target is `bytes`.
    var isLink = false
}

/// What an open file handle refers to.
enum OpenItem: Sendable {
    case cube(CubeHandle)
    case properties(TextBuffer)
    case scratch(String)
    /// Generated read-only content (mag.json, errors, NRRD headers), fixed at open.
    case generated([UInt8])
    /// A generated view made as it is read (`volume.raw`, a slice image).
    case view(MountNode)
    /// `volume.raw` open for writing.
    case volume(VolumeWriter)
}

/// An open cube: its place, the version of its data file it reads and, once written or
/// truncated, its pending changes.
final class CubeHandle: Sendable {
    let node: MountNode
    /// The inode the cube was opened through: the version of the cube the kernel's pages hold.
    let inode: Inode
    let layer: String
    let magName: String
    let mag: any MagStore
    let index: Vec3
    let writer: Mutex<CubeWriter?>
    /// A handle replaces the cube whole (opened with O_TRUNC, or truncated to 0) and has not
    /// committed yet: no other handle may open the cube meanwhile (`DatasetFilesystem.openCube`).
    let replacing = Atomic<Bool>(false)
    /// Where reads come from.
    enum Pin: Sendable {
        /// One version of the data file (nil: there was none, zeros): the one on disk at the
        /// first open, then each one this cube committed. Another program replacing the file
        /// does not change it (`BlockCache.following`).
        case version(OpenedFile?)
        /// Whatever is on disk at each read (when too many versions are kept open already).
        case disk
    }
    let pinned: Mutex<Pin>
    /// The inode stood for another version before this cube was opened on it: the kernel may
    /// hold that version's pages, so every open of it drops them (no open may see them, even one
    /// that starts while the first open's drop is under way).
    let adopted: Bool
    /// Cubes that keep a version's descriptor open (bounded by `BlockCache.openReaders`).
    static let pinnedFiles = Atomic<Int>(0)

    init(node: MountNode, inode: Inode, layer: String, magName: String, mag: any MagStore, index: Vec3, pinned: Pin, adopted: Bool) {
        self.node = node
        self.inode = inode
        self.adopted = adopted
        self.pinned = Mutex(pinned)
        if case .version = pinned { Self.pinnedFiles.add(1, ordering: .relaxed) }
        self.layer = layer
        self.magName = magName
        self.mag = mag
        self.index = index
        self.writer = Mutex(nil)
    }

    deinit {
        if case .version = pinned.withLock({ $0 }) { Self.pinnedFiles.subtract(1, ordering: .relaxed) }
    }
}

/// The bytes of the properties file as one handle edits them.
final class TextBuffer: Sendable {
    struct Content {
        var bytes: [UInt8]
        var dirty: Bool
    }
    let content: Mutex<Content>
    init(_ bytes: [UInt8], dirty: Bool) { content = Mutex(Content(bytes: bytes, dirty: dirty)) }
}

extension Timestamp {
    init(_ status: FileStatus) {
        self.init(seconds: status.modificationSeconds, nanoseconds: UInt32(status.modificationNanoseconds))
    }
}
