import Foundation
import Synchronization
import Formats
import WebKnossos

/// Names, attributes and listings of the view.
extension DatasetFilesystem {
    static let propertiesName = DatasetProperties.fileName
    static let magInfoName = "mag.json"

    public func lookup(parent: Inode, name: String) throws -> Entry {
        takeInPropertiesChanges()
        let child = try state.withLock { s in try Self.child(of: try node(parent), named: name, in: &s) }
        // A cube's name is looked up at every open, so that the inode an open finds is the
        // version on disk now (`openCube`).
        let timeout: Double? = if case .cube = child { 0 } else { Self.entryTimeout(parent: parent) }
        return replying(Entry(attributes: try attributes(child), entryTimeout: timeout), child)
    }

    /// `entry` of `node` as it goes to the kernel, which counts it as one lookup of its inode.
    /// A cube's inode stands for the version of its data file on disk now (`InodeTable`).
    func replying(_ entry: Entry, _ node: MountNode) -> Entry {
        var entry = entry
        if case .cube(let layer, let mag, let index) = node, let store = try? magStore(layer, mag) {
            let version = FileStatus.of(store.filePath(index), followLinks: true)?.identity ?? []
            entry.attributes.inode = inodes.remember(node, version: version)
            entry.attributes = withPendingSize(entry.attributes)
        } else {
            entry.attributes.inode = inodes.remember(node)
        }
        return entry
    }

    public func forget(_ inode: Inode, lookups: UInt64) {
        inodes.forget(inode, lookups)
    }

    /// Names in the mount root change with the properties (layers come and go), and the kernel
    /// is never asked to drop them (`invalidate` skips the root): a request that changes the root
    /// (`sed -i`'s rename) holds the root's lock in the kernel, and a notification waiting for
    /// that lock while the daemon is killed made the mount unkillable. So they are not cached
    /// (one lookup of the layer's name per path opened); names below are cached for a second.
    static func entryTimeout(parent: Inode) -> Double? { parent == .root ? 0 : nil }

    public func getattr(_ inode: Inode) throws -> Attributes {
        let node = try node(inode)
        if case .cube = node {} else { takeInPropertiesChanges() }
        var attributes = try attributes(node)
        attributes.inode = inode  // an old version of a cube keeps its own number
        return withPendingSize(attributes)
    }

    /// `attributes` of an inode, with the length of a cube that is truncated and being written
    /// back (what was written since), as programs expect of a file they truncated: `dd
    /// conv=sparse` and `np.memmap(mode="w+")` extend a file only when fstat says it is shorter.
    /// Every reply that carries a cube's size goes through here (getattr, lookup, create), or
    /// the kernel caches the whole size for the inode.
    func withPendingSize(_ attributes: Attributes) -> Attributes {
        guard let cube = state.withLock({ $0.openCubes[attributes.inode]?.cube }),
            let size = cube.writer.withLock({ $0?.isIncomplete == true ? $0!.size : nil })
        else { return attributes }
        var attributes = attributes
        attributes.size = UInt64(size)
        attributes.blocks = UInt64((size + 511) / 512)
        return attributes
    }

    public func readlink(_ inode: Inode) throws -> String {
        let node = try node(inode)
        if case .scratch(let name) = node, let file = state.withLock({ $0.scratch[name] }), file.isLink {
            return String(decoding: file.bytes, as: UTF8.self)
        }
        guard case .layer(let name) = node, state.withLock({ $0.isLinked(name) }) else {
            throw FUSEError.invalid
        }
        return "\(MountNode.controlName)/links/\(name)"
    }

    public func readdir(_ inode: Inode, handle: Handle, offset: UInt64) throws -> [DirectoryEntry] {
        takeInPropertiesChanges()
        let node = try node(inode)
        let children = try state.withLock { s in try Self.children(of: node, in: &s) }
        let all = [(".", node), ("..", node)] + children
        guard offset < all.count else { return [] }
        let linked = Set(state.withLock { s in s.layerNames.filter { s.isLinked($0) } + s.scratch.filter(\.value.isLink).map(\.key) })
        return all[Int(offset)...].map { name, child in
            DirectoryEntry(name: name, inode: inodes.inode(child), kind: Self.kind(of: child, linked: { linked.contains($0) }))
        }
    }

    public func statfs(_ inode: Inode) throws -> FilesystemStatistics {
        let path = state.withLock { $0.dataset.path }
        guard let space = PathOps.fileSystemSpace(path) else { return FilesystemStatistics() }
        return FilesystemStatistics(
            blockSize: space.blockSize, blocks: space.blocks, freeBlocks: space.free, availableBlocks: space.available,
            files: space.files, freeFiles: space.freeFiles)
    }

    // MARK: The tree

    static func kind(of node: MountNode, linked: (String) -> Bool) -> FileKind {
        switch node {
        case .root, .linkTarget, .mag, .zDirectory, .yDirectory, .control, .links, .slices: return .directory
        case .layer(let name): return linked(name) ? .symbolicLink : .directory
        case .scratch(let name): return linked(name) ? .symbolicLink : .regular
        case .properties, .magInfo, .cube, .errors, .stats, .cubeHeader, .volume, .volumeHeader, .slice: return .regular
        }
    }

    /// The child `name` of `parent`, or ENOENT.
    static func child(of parent: MountNode, named name: String, in s: inout ViewState) throws -> MountNode {
        switch parent {
        case .root:
            if name == propertiesName && !s.propertiesHidden { return .properties }
            if name == MountNode.controlName { return .control }
            if s.scratch[name] != nil { return .scratch(name) }
            if s.layer(name) != nil { return .layer(name) }
        case .layer(let layer) where !s.isLinked(layer), .linkTarget(let layer):
            if case .linkTarget = parent, !PathOps.isDirectory(s.dataset.layerPath(layer)) { break }
            if s.mags(layer).contains(where: { $0.name == name }) { return .mag(layer: layer, mag: name) }
        case .mag(let layer, let mag):
            if name == magInfoName { return .magInfo(layer: layer, mag: mag) }
            if name == MountNode.volumeName { return .volume(layer: layer, mag: mag) }
            if name == MountNode.volumeHeaderName { return .volumeHeader(layer: layer, mag: mag) }
            if name == MountNode.slicesName { return .slices(layer: layer, mag: mag) }
            if let z = GridName.index(name, "z"), let store = try s.knownStore(layer, mag) {
                let node = MountNode.zDirectory(layer: layer, mag: mag, z: z)
                if try s.madeDirectories.contains(node) || store.hasFilePlane(z: z) { return node }
            }
        case .zDirectory(let layer, let mag, let z):
            if let y = GridName.index(name, "y"), let store = try s.knownStore(layer, mag) {
                let node = MountNode.yDirectory(layer: layer, mag: mag, z: z, y: y)
                if try s.madeDirectories.contains(node) || store.hasFileRow(y: y, z: z) { return node }
            }
        case .yDirectory(let layer, let mag, let z, let y):
            if let x = GridName.index(name, "x", ".raw") {
                let node = MountNode.cube(layer: layer, mag: mag, index: Vec3(x, y, z))
                if try s.pendingCubes[node] != nil || s.knownStore(layer, mag)?.fileExists(Vec3(x, y, z)) == true { return node }
            }
            if let x = GridName.index(name, "x", ".nhdr"), try s.knownStore(layer, mag)?.fileExists(Vec3(x, y, z)) == true {
                return .cubeHeader(layer: layer, mag: mag, index: Vec3(x, y, z))
            }
        case .slices(let layer, let mag):
            if let planes = s.slicePlanes(layer, mag), let z = sliceIndex(name, planes: planes) { return .slice(layer: layer, mag: mag, z: z) }
        case .control:
            if name == "errors" { return .errors }
            if name == "stats" { return .stats }
            if name == "links" { return .links }
        case .links:
            if s.layer(name) != nil && s.isLinked(name) && PathOps.isDirectory(s.dataset.layerPath(name)) {
                return .linkTarget(name)
            }
        default:
            break
        }
        throw FUSEError.noEntry
    }

    /// The children of a directory node, by name.
    static func children(of node: MountNode, in s: inout ViewState) throws -> [(String, MountNode)] {
        switch node {
        case .root:
            var result: [(String, MountNode)] = []
            if !s.propertiesHidden { result.append((propertiesName, .properties)) }
            result += s.layerNames.map { ($0, .layer($0)) }
            result.append((MountNode.controlName, .control))
            result += s.scratch.keys.sorted().map { ($0, .scratch($0)) }
            return result
        case .layer(let layer), .linkTarget(let layer):
            if case .layer = node, s.isLinked(layer) { throw FUSEError(ENOTDIR) }
            return s.mags(layer).map { ($0.name, .mag(layer: layer, mag: $0.name)) }
        case .mag(let layer, let mag):
            guard let store = try s.knownStore(layer, mag) else { throw FUSEError.noEntry }
            var zs = Set(try store.fileZs())
            for case .zDirectory(let l, let m, let z) in s.madeDirectories where l == layer && m == mag { zs.insert(z) }
            return [
                (magInfoName, .magInfo(layer: layer, mag: mag)), (MountNode.volumeName, .volume(layer: layer, mag: mag)),
                (MountNode.volumeHeaderName, .volumeHeader(layer: layer, mag: mag)), (MountNode.slicesName, .slices(layer: layer, mag: mag)),
            ] + zs.sorted().map { ("z\($0)", .zDirectory(layer: layer, mag: mag, z: $0)) }
        case .zDirectory(let layer, let mag, let z):
            guard let store = try s.knownStore(layer, mag) else { throw FUSEError.noEntry }
            var ys = Set(try store.fileYs(z: z))
            for case .yDirectory(let l, let m, let zz, let y) in s.madeDirectories where l == layer && m == mag && zz == z { ys.insert(y) }
            return ys.sorted().map { ("y\($0)", .yDirectory(layer: layer, mag: mag, z: z, y: $0)) }
        case .yDirectory(let layer, let mag, let z, let y):
            guard let store = try s.knownStore(layer, mag) else { throw FUSEError.noEntry }
            // One listing of the row: each cube on disk also gets its NRRD header's name.
            let onDisk = Set(try store.fileXs(y: y, z: z))
            var xs = onDisk
            for case .cube(let l, let m, let index) in s.pendingCubes.keys where l == layer && m == mag && index.z == z && index.y == y {
                xs.insert(index.x)
            }
            return xs.sorted().flatMap { x -> [(String, MountNode)] in
                let cube: (String, MountNode) = ("x\(x).raw", .cube(layer: layer, mag: mag, index: Vec3(x, y, z)))
                guard onDisk.contains(x) else { return [cube] }
                return [cube, ("x\(x).nhdr", .cubeHeader(layer: layer, mag: mag, index: Vec3(x, y, z)))]
            }
        case .slices(let layer, let mag):
            let planes = s.slicePlanes(layer, mag) ?? 0
            return (0..<planes).map { (sliceName($0, planes: planes), .slice(layer: layer, mag: mag, z: $0)) }
        case .control:
            return [("errors", .errors), ("links", .links), ("stats", .stats)]
        case .links:
            return s.layerNames.filter { s.isLinked($0) && PathOps.isDirectory(s.dataset.layerPath($0)) }.map {
                ($0, .linkTarget($0))
            }
        default:
            throw FUSEError(ENOTDIR)
        }
    }

    // MARK: Attributes

    func attributes(_ node: MountNode) throws -> Attributes {
        let inode = inodes.inode(node)
        let writable = !options.readOnly
        let directoryMode: UInt16 = writable ? 0o755 : 0o555
        let fileMode: UInt16 = writable ? 0o644 : 0o444
        func directory(_ path: String?) -> Attributes {
            // No directory on disk (the control directories): the mount's start, a stable time.
            let time = path.flatMap { FileStatus.of($0, followLinks: true) }.map(Timestamp.init) ?? statistics.startedAt
            return Attributes(
                inode: inode, kind: .directory, permissions: directoryMode, linkCount: 2, size: 4096,
                accessTime: time, modificationTime: time, changeTime: time)
        }
        func file(_ size: Int, mode: UInt16, time: Timestamp, allocated: Int? = nil) -> Attributes {
            Attributes(
                inode: inode, kind: .regular, permissions: mode, size: UInt64(size),
                blocks: UInt64(((allocated ?? size) + 511) / 512), accessTime: time, modificationTime: time, changeTime: time)
        }

        switch node {
        case .root:
            return directory(state.withLock { $0.dataset.path })
        case .properties:
            let path = state.withLock { $0.dataset.propertiesPath }
            guard let status = FileStatus.of(path, followLinks: true) else { throw FUSEError.noEntry }
            return file(status.size, mode: fileMode, time: Timestamp(status))
        case .layer(let name):
            let (linked, path) = state.withLock { ($0.isLinked(name), $0.dataset.layerPath(name)) }
            if linked {
                let target = "\(MountNode.controlName)/links/\(name)"
                let time = FileStatus.of(path).map(Timestamp.init) ?? .now
                return Attributes(
                    inode: inode, kind: .symbolicLink, permissions: 0o777, size: UInt64(target.utf8.count),
                    accessTime: time, modificationTime: time, changeTime: time)
            }
            return directory(path)
        case .linkTarget(let name):
            return directory(state.withLock { $0.dataset.layerPath(name) })
        case .mag(let layer, let mag):
            return directory(state.withLock { $0.magPath(layer, mag) })
        case .zDirectory(let layer, let mag, let z):
            return directory(state.withLock { $0.magPath(layer, mag) }.map { "\($0)/z\(z)" })
        case .yDirectory(let layer, let mag, let z, let y):
            return directory(state.withLock { $0.magPath(layer, mag) }.map { "\($0)/z\(z)/y\(y)" })
        case .magInfo(let layer, let mag):
            // Made from the properties and the mag's header: it changes when they do.
            let text = try magInfo(layer, mag)
            let marker = (try? magStore(layer, mag))?.format.markerFile ?? "header.wkw"
            let sources = [state.withLock { $0.dataset.propertiesPath }, state.withLock { $0.magPath(layer, mag) }.map { $0 + "/" + marker }]
            let time = sources.compactMap { $0.flatMap { FileStatus.of($0, followLinks: true) }.map(Timestamp.init) }.max() ?? statistics.startedAt
            return file(text.count, mode: 0o444, time: time)
        case .cube(let layer, let mag, let index):
            let store = try magStore(layer, mag)
            let size = store.fileBytes
            if let status = FileStatus.of(store.filePath(index)) {
                return file(size, mode: fileMode, time: Timestamp(status), allocated: status.allocated)
            }
            return file(size, mode: fileMode, time: .now, allocated: 0)
        case .control, .links:
            return directory(nil)
        case .slices(let layer, let mag):
            return directory(state.withLock { $0.magPath(layer, mag) })
        case .volume(let layer, let mag), .volumeHeader(let layer, let mag), .slice(let layer, let mag, _), .cubeHeader(let layer, let mag, _):
            // Made from the properties and the data: as recent as the newest of those it shows.
            let time = [state.withLock { $0.dataset.propertiesPath }, state.withLock { $0.magPath(layer, mag) }]
                .compactMap { $0.flatMap { FileStatus.of($0, followLinks: true) }.map(Timestamp.init) }.max() ?? statistics.startedAt
            // volume.raw is written in place; the headers and slice images are read-only.
            if case .volume = node { return file(try viewSize(node), mode: fileMode, time: time) }
            return file(try viewSize(node), mode: 0o444, time: time)
        case .errors:
            return file(errors.text.count, mode: 0o444, time: errors.modified)
        case .stats:
            return file(statisticsText().count, mode: 0o444, time: statistics.startedAt)
        case .scratch(let name):
            guard let scratch = state.withLock({ $0.scratch[name] }) else { throw FUSEError.noEntry }
            if scratch.isLink {
                return Attributes(
                    inode: inode, kind: .symbolicLink, permissions: 0o777, size: UInt64(scratch.bytes.count),
                    accessTime: scratch.modified, modificationTime: scratch.modified, changeTime: scratch.modified)
            }
            return file(scratch.bytes.count, mode: fileMode, time: scratch.modified)
        }
    }

    /// The text of a mag's `mag.json`: everything needed to read its cubes with numpy.
    func magInfo(_ layer: String, _ mag: String) throws -> [UInt8] {
        let (properties, entry) = try state.withLock { s -> (LayerProperties, MagProperties) in
            guard let properties = s.layer(layer), let entry = s.mags(layer).first(where: { $0.name == mag })?.entry else {
                throw FUSEError.noEntry
            }
            return (properties, entry)
        }
        let store = try magStore(layer, mag)
        let shape = store.fileShape, c = store.channels, type = store.voxelType.name
        let box = entry.mag.fromMag1(properties.boundingBox)
        func ints(_ values: [Int]) -> JSONValue { .array(values.map { .int(Int64($0)) }) }
        var pairs: [(String, JSONValue)] = [
            ("dtype", .string(type)),
            ("channels", .int(Int64(c))),
            ("cubeShape", ints([shape.z, shape.y, shape.x, c])),
            ("cubeBytes", .int(Int64(store.fileBytes))),
            ("voxelOrder", .string("C order (z, y, x, channel): x fastest, channels interleaved, little-endian")),
            ("mag", ints(entry.mag.factors.array)),
            ("cubeFile", .string("z{Z}/y{Y}/x{X}.raw holds voxels [X*\(shape.x), (X+1)*\(shape.x)) along x, [Y*\(shape.y), (Y+1)*\(shape.y)) along y, [Z*\(shape.z), (Z+1)*\(shape.z)) along z, in this mag's voxels")),
            ("format", .string(store.format.rawValue)),
        ]
        pairs += store.describeLayout()
        pairs += [
            ("boundingBox", .object([("topLeft", ints(box.offset.array)), ("size", ints(box.size.array))])),
            ("boundingBoxMag1", .object([("topLeft", ints(properties.boundingBox.offset.array)), ("size", ints(properties.boundingBox.size.array))])),
            ("numpy", .string("numpy.fromfile('z0/y0/x0.raw', dtype='\(type)').reshape(\(shape.z), \(shape.y), \(shape.x), \(c))  # (z, y, x, c)")),
            (
                "volume",
                .object([
                    ("file", .string(MountNode.volumeName)),
                    ("shape", ints([box.size.z, box.size.y, box.size.x, c])),
                    ("offset", ints(box.offset.array)),
                    ("offsetMag1", ints(entry.mag.toMag1(box).offset.array)),
                    ("numpy", .string("numpy.memmap('\(MountNode.volumeName)', dtype='\(type)', mode='r', shape=(\(box.size.z), \(box.size.y), \(box.size.x), \(c)))  # (z, y, x, c) of the bounding box")),
                ])
            ),
        ]
        let json: JSONValue = .object(pairs)
        return Array((json.pretty() + "\n").utf8)
    }
}

