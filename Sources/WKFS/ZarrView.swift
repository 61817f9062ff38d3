import Foundation
import Synchronization
import Formats
import WebKnossos

/// Any dataset as a Zarr v3 dataset, read-only (`wkfs mount -o zarr`): laid out as webknossos
/// lays out a Zarr3 dataset (`datasource-properties.json` saying `zarr3`, root and layer
/// `zarr.json` groups with OME-Zarr multiscales, one array per mag), every data file (a WKW
/// file, a Zarr3 shard) shown as one uncompressed shard whose inner chunks are its blocks. Shard
/// indexes are computed, not read; a read of some chunks decodes only their blocks, through the
/// same block cache as the raw-cube view.
public final class ZarrViewFilesystem: FUSEFilesystem {
    let inodes = InodeTable<ZarrNode>(root: .root)
    let cache: BlockCache
    let errors: ErrorLog
    let statistics = MountStatistics()
    public var requestCounts: FUSERequestCounts? { statistics.requests }
    let state: Mutex<ZarrViewState>

    public init(datasetPath: String, cacheSize: Int, log: @escaping @Sendable (String) -> Void) throws {
        cache = BlockCache(cacheSize: cacheSize)
        errors = ErrorLog(log: log)
        state = Mutex(ZarrViewState(dataset: try Dataset.open(datasetPath)))
    }

    public func initialize(connection: inout FUSEConnection, notifier: FUSENotifier) {}

    public func errorNumber(for error: any Error, operation: FUSEOperation) -> Int32 {
        let code = DatasetFilesystem.errorNumber(error)
        if !(error is FUSEError) && code != ENOENT { errors.record("\(operation) failed: \(error)") }
        return code
    }

    func node(_ inode: Inode) throws -> ZarrNode {
        guard let node = inodes.node(inode) else { throw FUSEError.noEntry }
        return node
    }

    // MARK: Names

    public func lookup(parent: Inode, name: String) throws -> Entry {
        let child = try self.child(of: try node(parent), named: name)
        var entry = Entry(attributes: try attributes(child))
        entry.attributes.inode = inodes.remember(child)
        return entry
    }

    public func forget(_ inode: Inode, lookups: UInt64) { inodes.forget(inode, lookups) }

    public func getattr(_ inode: Inode) throws -> Attributes { try attributes(try node(inode)) }

    public func readdir(_ inode: Inode, handle: Handle, offset: UInt64) throws -> [DirectoryEntry] {
        let node = try node(inode)
        let all = [(".", node), ("..", node)] + (try children(of: node))
        guard offset < all.count else { return [] }
        return all[Int(offset)...].map { name, child in
            DirectoryEntry(name: name, inode: inodes.inode(child), kind: child.isDirectory ? .directory : .regular)
        }
    }

    func child(of parent: ZarrNode, named name: String) throws -> ZarrNode {
        guard let found = try children(of: parent).first(where: { $0.0 == name }) else { throw FUSEError.noEntry }
        return found.1
    }

    /// The children of a directory, by name.
    func children(of node: ZarrNode) throws -> [(String, ZarrNode)] {
        switch node {
        case .root:
            let layers = state.withLock { $0.layerNames }
            return [(DatasetProperties.fileName, .properties), (Zarr3Array.metadataName, .rootGroup)]
                + layers.map { ($0, .layer($0)) } + [(MountNode.controlName, .control)]
        case .layer(let layer):
            return [(Zarr3Array.metadataName, .layerGroup(layer))]
                + state.withLock { $0.magNames(layer) }.map { ($0, .mag(layer: layer, mag: $0)) }
        case .mag(let layer, let mag):
            return [(Zarr3Array.metadataName, .arrayMetadata(layer: layer, mag: mag)), ("c", .keys(layer: layer, mag: mag, prefix: []))]
        case .keys(let layer, let mag, let prefix):
            let files = try dataFiles(layer, mag)
            switch prefix.count {
            case 0: return [("0", .keys(layer: layer, mag: mag, prefix: [0]))]
            case 1: return Set(files.map(\.x)).sorted().map { ("\($0)", .keys(layer: layer, mag: mag, prefix: [0, $0])) }
            case 2: return Set(files.filter { $0.x == prefix[1] }.map(\.y)).sorted().map { ("\($0)", .keys(layer: layer, mag: mag, prefix: prefix + [$0])) }
            default:
                return files.filter { $0.x == prefix[1] && $0.y == prefix[2] }.map(\.z).sorted().map {
                    ("\($0)", .shard(layer: layer, mag: mag, index: Vec3(prefix[1], prefix[2], $0)))
                }
            }
        case .control:
            return [("stats", .stats)]
        default:
            throw FUSEError.notDirectory
        }
    }

    /// The data files of a mag, listed at most once a second (a walk of the file tree).
    func dataFiles(_ layer: String, _ mag: String) throws -> [Vec3] {
        let key = layer + "/" + mag
        let now = ContinuousClock.now
        if let known = state.withLock({ $0.listings[key] }), now - known.at < .seconds(1) { return known.files }
        let files = try store(layer, mag).dataFiles()
        state.withLock { $0.listings[key] = (now, files) }
        return files
    }

    func store(_ layer: String, _ mag: String) throws -> any MagStore {
        try state.withLock { s in try s.store(layer, mag) }
    }

    // MARK: Attributes

    func attributes(_ node: ZarrNode) throws -> Attributes {
        let started = statistics.startedAt
        func file(_ size: Int, time: Timestamp = .zero) -> Attributes {
            Attributes(
                inode: inodes.inode(node), kind: .regular, permissions: 0o444, size: UInt64(size),
                accessTime: time == .zero ? started : time, modificationTime: time == .zero ? started : time,
                changeTime: time == .zero ? started : time)
        }
        switch node {
        case .shard(let layer, let mag, let index):
            let store = try store(layer, mag)
            let time = FileStatus.of(store.filePath(index), followLinks: true).map(Timestamp.init) ?? started
            return file(ZarrShardLayout(store).fileBytes, time: time)
        case .properties, .rootGroup, .layerGroup, .arrayMetadata, .stats:
            return file(try content(node).count)
        default:
            return Attributes(
                inode: inodes.inode(node), kind: .directory, permissions: 0o555, linkCount: 2, size: 4096,
                accessTime: started, modificationTime: started, changeTime: started)
        }
    }

    // MARK: Files

    public func open(_ inode: Inode, flags: OpenFlags) throws -> OpenResult {
        let node = try node(inode)
        if flags.isWritable { throw FUSEError.readOnly }
        if node.isDirectory { throw FUSEError.isDirectory }
        // Shards bypass the page cache: a reader's ranges (an index, a few chunks) reach the
        // mount as asked, without the kernel's readahead decoding the chunks beside them.
        if case .shard = node { return OpenResult(handle: Handle(0), directIO: true, noFlush: true) }
        // Small generated texts: fixed at open, served from the handle's copy.
        let text = try content(node)
        let handle = state.withLock { s in
            s.nextHandle += 1
            s.texts[s.nextHandle] = text
            return s.nextHandle
        }
        return OpenResult(handle: Handle(handle), directIO: true, noFlush: true)
    }

    public func release(_ inode: Inode, handle: Handle, flags: OpenFlags) throws {
        state.withLock { _ = $0.texts.removeValue(forKey: handle.rawValue) }
    }

    public func read(_ inode: Inode, handle: Handle, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let node = try node(inode)
        if case .shard(let layer, let mag, let index) = node {
            let store = try store(layer, mag)
            do {
                let count = try ZarrShardLayout(store).read(store, index, offset: Int(offset), into: buffer, cache: cache)
                MountStatistics.add(statistics.cubeBytesRead, count)
                return count
            } catch {
                errors.record("\(layer)/\(mag)/c/0/\(index.x)/\(index.y)/\(index.z): \(error)")
                throw error
            }
        }
        guard let text = state.withLock({ $0.texts[handle.rawValue] }) else { throw FUSEError.badHandle }
        let start = min(Int(offset), text.count)
        let count = min(buffer.count, text.count - start)
        text.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: count) }
        return count
    }

    /// The bytes of a generated file.
    func content(_ node: ZarrNode) throws -> [UInt8] {
        switch node {
        case .properties:
            let view = state.withLock { $0 }
            let text = view.dataset.zarrViewProperties { layer, entry in view.magName(layer, entry) }.encoded()
            return Array(text)
        case .rootGroup:
            return Array(Dataset.zarrRootGroup.pretty().utf8)
        case .layerGroup(let layer):
            return try state.withLock { s in
                let view = s  // a copy: the closure below must not capture the inout state
                guard let properties = view.dataset.layers.first(where: { $0.name == layer }) else { throw FUSEError.noEntry }
                return Array(view.dataset.zarrLayerGroup(properties) { view.magName(properties, $0) }.pretty().utf8)
            }
        case .arrayMetadata(let layer, let mag):
            let store = try store(layer, mag)
            let box = try state.withLock { s -> Box in
                guard let properties = s.dataset.layers.first(where: { $0.name == layer }),
                    let entry = properties.mags.first(where: { s.magName(properties, $0) == mag })
                else { throw FUSEError.noEntry }
                return entry.mag.fromMag1(properties.boundingBox)
            }
            // The array reaches past the box to whole files, and to every data file on disk.
            let end = try dataFiles(layer, mag).reduce(box.end) { Vec3.max($0, ($1 + Vec3(1, 1, 1)) * store.fileShape) }
            let json = Zarr3Array.metadataJSON(
                voxelType: store.voxelType, channels: store.channels, size: end, chunk: store.blockShape, shard: store.fileShape,
                compress: false, fill: store.fillValue)
            return Array(json.compact().utf8)
        case .stats:
            let c = cache.statistics()
            let text = """
                blocks decoded: \(c.misses) groups, \(c.decodedBytes) bytes
                blocks served from the cache: \(c.hits) groups
                groups of zeros: \(c.zeroGroups)
                shard bytes read: \(statistics.cubeBytesRead.load(ordering: .relaxed))

                """
            return Array(text.utf8)
        default:
            throw FUSEError.isDirectory
        }
    }
}

/// What the Zarr view shows, by what it is.
enum ZarrNode: Hashable, Sendable {
    case root, properties, rootGroup
    case layer(String)
    case layerGroup(String)
    case mag(layer: String, mag: String)
    case arrayMetadata(layer: String, mag: String)
    /// `c`, `c/0`, `c/0/X`, `c/0/X/Y` of a mag: `prefix` is what follows `c`.
    case keys(layer: String, mag: String, prefix: [Int])
    /// `c/0/X/Y/Z`: one data file as a shard.
    case shard(layer: String, mag: String, index: Vec3)
    case control, stats

    var isDirectory: Bool {
        switch self {
        case .root, .layer, .mag, .keys, .control: true
        default: false
        }
    }
}

/// The Zarr view's shared state.
struct ZarrViewState {
    var dataset: Dataset
    var stores: [String: any MagStore] = [:]
    var listings: [String: (at: ContinuousClock.Instant, files: [Vec3])] = [:]
    var texts: [UInt64: [UInt8]] = [:]
    var nextHandle: UInt64 = 0

    var layerNames: [String] { dataset.layers.filter { $0.format != nil }.map(\.name) }

    /// A mag's directory name in the view: the last part of its path on disk (as in the raw view).
    func magName(_ layer: LayerProperties, _ entry: MagProperties) -> String {
        String(dataset.magPath(layer, entry).split(separator: "/").last ?? "")
    }

    func magNames(_ layer: String) -> [String] {
        guard let properties = dataset.layers.first(where: { $0.name == layer && $0.format != nil }) else { return [] }
        return properties.mags.map { magName(properties, $0) }
    }

    mutating func store(_ layer: String, _ mag: String) throws -> any MagStore {
        let key = layer + "/" + mag
        if let known = stores[key] { return known }
        guard let properties = dataset.layers.first(where: { $0.name == layer }), let format = properties.format,
            let entry = properties.mags.first(where: { magName(properties, $0) == mag })
        else { throw FUSEError.noEntry }
        let store = try Dataset.openStore(format, dataset.magPath(properties, entry))
        stores[key] = store
        return store
    }
}
