import Foundation
import Synchronization
import Formats
import WebKnossos

/// Opening, reading and writing files of the view.
extension DatasetFilesystem {
    public func open(_ inode: Inode, flags: OpenFlags) throws -> OpenResult {
        let node = try node(inode)
        if case .cube = node {} else { takeInPropertiesChanges() }
        if flags.isWritable { try requireWritable() }
        switch node {
        case .cube:
            let cube = try openCube(node, inode, truncate: flags.truncate)
            if !flags.isWritable { prefetcher.cubeOpened(cube.mag, cube.index) }
            // A read-only handle has nothing to flush: its close costs no request (the writers'
            // own closes commit their changes).
            return OpenResult(
                handle: state.withLock { $0.addHandle(.cube(cube)) }, keepCache: !flags.truncate && !cube.adopted,
                directIO: options.directIO && !flags.isWritable, noFlush: !flags.isWritable)
        case .properties:
            let bytes = flags.truncate ? [] : try currentProperties()
            // What a program read is what its edit is made from (`applyProperties`).
            // (An open for writing only reads nothing: vim's in-place save opens O_WRONLY and
            // truncates after.)
            if !flags.truncate && flags.accessMode != .writeOnly {
                let reader = FUSECaller.process
                let parent = reader.flatMap(FUSECaller.parent)
                state.withLock { $0.editBases.read(bytes, by: reader, parent: parent) }
            }
            let buffer = TextBuffer(bytes, dirty: flags.truncate)
            return OpenResult(handle: state.withLock { $0.addHandle(.properties(buffer)) }, directIO: true)
        case .scratch(let name):
            return try state.withLock { s in
                guard s.scratch[name] != nil else { throw FUSEError.noEntry }
                if flags.truncate { s.scratch[name]!.bytes = [] }
                return OpenResult(handle: s.addHandle(.scratch(name)), directIO: true)
            }
        case .magInfo(let layer, let mag):
            if flags.isWritable { throw FUSEError.accessDenied }
            let text = try magInfo(layer, mag)
            return OpenResult(handle: state.withLock { $0.addHandle(.generated(text)) }, directIO: true)
        case .volumeHeader, .cubeHeader:
            if flags.isWritable { throw FUSEError.accessDenied }
            let header = try nrrdHeader(node)
            return OpenResult(handle: state.withLock { $0.addHandle(.generated(header)) }, directIO: true)
        case .volume(let layer, let mag) where flags.isWritable:
            if flags.truncate || flags.append {
                throw refuse(EINVAL, "\(layer)/\(mag)/\(MountNode.volumeName): the volume is written in place (numpy.memmap mode r+, dd conv=notrunc), not replaced (O_TRUNC) or extended (O_APPEND)")
            }
            let (box, _, store) = try volume(layer, mag)
            guard let writable = store as? any BlockWritableStore else {
                throw refuse(EPERM, "\(layer)/\(mag)/\(MountNode.volumeName): \(store.format) mags cannot be written through the mount")
            }
            let writer = VolumeWriter(layer: layer, magName: mag, mag: writable, box: box, memoryBudget: writeBudget(writable))
            return OpenResult(handle: state.withLock { $0.addHandle(.volume(writer)) })
        case .volume, .slice:
            if flags.isWritable { throw refuse(EACCES, "\(node): the slice images are read-only; write the volume or the cubes") }
            return OpenResult(handle: state.withLock { $0.addHandle(.view(node)) }, noFlush: true)
        case .errors:
            if flags.isWritable { throw FUSEError.accessDenied }
            return OpenResult(handle: state.withLock { $0.addHandle(.generated(errors.text)) }, directIO: true)
        case .stats:
            if flags.isWritable { throw FUSEError.accessDenied }
            let text = statisticsText()  // takes the state lock itself
            return OpenResult(handle: state.withLock { $0.addHandle(.generated(text)) }, directIO: true)
        default:
            throw FUSEError.isDirectory
        }
    }

    public func create(parent: Inode, name: String, permissions: UInt16, flags: OpenFlags) throws -> (entry: Entry, file: OpenResult) {
        try requireWritable()
        let parentNode = try node(parent)
        switch parentNode {
        case .root:
            if name == Self.propertiesName {
                state.withLock { $0.propertiesHidden = false }
                let buffer = TextBuffer([], dirty: true)
                let handle = state.withLock { $0.addHandle(.properties(buffer)) }
                // The file on disk stays as it is until a valid version is complete.
                var attributes = try attributes(.properties)
                attributes.size = 0
                return (replying(Entry(attributes: attributes, attributeTimeout: 0, entryTimeout: 0), .properties), OpenResult(handle: handle, directIO: true))
            }
            if let why = scratchNameProblem(name) { throw refuse(EINVAL, "cannot create \(name) in the mount root: \(why)") }
            let handle = state.withLock { s in
                if s.scratch[name] == nil || flags.truncate { s.scratch[name] = ScratchFile(bytes: [], modified: .now) }
                return s.addHandle(.scratch(name))
            }
            return (replying(Entry(attributes: try attributes(.scratch(name)), entryTimeout: 0), .scratch(name)), OpenResult(handle: handle, directIO: true))
        case .yDirectory(let layer, let mag, let z, let y):
            guard let x = GridName.index(name, "x", ".raw") else {
                throw refuse(EINVAL, "\(layer)/\(mag)/z\(z)/y\(y)/\(name): only cubes named x{X}.raw can be created here")
            }
            let node = MountNode.cube(layer: layer, mag: mag, index: Vec3(x, y, z))
            var entry = replying(Entry(attributes: try attributes(node)), node)
            let cube = try openCube(node, entry.attributes.inode, truncate: true)
            let handle = state.withLock { s in
                s.pendingCubes[node, default: 0] += 1
                return s.addHandle(.cube(cube))
            }
            entry.attributes = withPendingSize(entry.attributes)  // 0: a new cube, not yet written
            return (entry, OpenResult(handle: handle))
        default:
            throw refuse(EPERM, "cannot create '\(name)' here: new files are cubes (LAYER/MAG/zZ/yY/xX.raw) or editor files in the root")
        }
    }

    /// The one open cube of `node` through `inode`, shared by every handle on it, so that changes
    /// made through several descriptors (a program's `write` and its `mmap` writeback, two
    /// programs) all land.
    ///
    /// An inode stands for one version of the cube's data file (`InodeTable`), and cube names
    /// are looked up at every open, so an open finds the version on disk now. The kernel keeps
    /// pages per inode, so an inode's pages must all be of its version. Its handles read that
    /// version even after another program replaced the file, as the open descriptors of a local
    /// file replaced by rename; an open of an inode that others have open joins them (a reopen
    /// through `/proc/self/fd`, or an open whose lookup came just before a replacement). An
    /// inode that nobody has open takes the version on disk; when that is another than the one
    /// it stood for, every open of it drops the kernel's cached pages (`CubeHandle.adopted`).
    ///
    /// A cube is replaced whole (`truncate`: O_TRUNC, or a new cube) only while no other handle
    /// has it open, and nothing else opens it until that replacement is committed: the kernel
    /// shrinks a file opened with O_TRUNC for every reader of it (a mapped reader dies of SIGBUS,
    /// others read a short or half-new cube), so readers see the old or the new cube, whole.
    func openCube(_ node: MountNode, _ inode: Inode, truncate: Bool) throws -> CubeHandle {
        guard case .cube(let layer, let mag, let index) = node else { throw FUSEError.invalid }
        let store = try magStore(layer, mag)
        // Descriptors kept for versions are bounded like the block cache's; beyond that a
        // handle follows the file on disk (no version kept for it).
        let pins = CubeHandle.pinnedFiles.load(ordering: .relaxed) < BlockCache.openReaders
        let onDisk: OpenedFile?
        do {
            onDisk = try cache.current(store, index)
        } catch {
            throw translate(error, "\(node)")
        }
        let diskVersion = onDisk?.reader.identity ?? []
        var busy = ""
        let opened: CubeHandle? = waitWhileBusy(replacing: truncate ? node : nil) { s in
            let shared = s.openCubes[inode]
            if truncate && shared != nil {
                busy = "open elsewhere; a cube is replaced whole (O_TRUNC) only when nothing else has it open"
                return nil
            }
            if let shared, shared.cube.replacing.load(ordering: .acquiring) {
                busy = "being replaced whole by another program (opened with O_TRUNC); open it when that program has closed it"
                return nil
            }
            if !truncate && s.replacementsWaiting[node] != nil {
                busy = "another program waits to replace it whole (O_TRUNC); open it when that program has closed it"
                return nil
            }
            if let shared {
                s.openCubes[inode]!.handles += 1
                return shared.cube
            }
            let version = inodes.version(inode)
            let adopted = version != nil && version != diskVersion
            if adopted { inodes.setVersion(inode, diskVersion) }
            let cube = CubeHandle(
                node: node, inode: inode, layer: layer, magName: mag, mag: store, index: index,
                pinned: pins ? .version(onDisk) : .disk, adopted: adopted)
            if truncate { cube.replacing.store(true, ordering: .releasing) }
            s.openCubes[inode] = (cube, 1)
            return cube
        }
        guard let cube = opened else {
            throw refuse(EBUSY, "\(layer)/\(mag)/z\(index.z)/y\(index.y)/x\(index.x).raw: \(busy)")
        }
        if truncate {
            let writable = try writableStore(cube)
            let budget = writeBudget(writable)
            cube.writer.withLock { writer in
                writer = CubeWriter(mag: writable, index: index, truncated: true, memoryBudget: budget)
            }
        }
        return cube
    }

    /// After `cube` committed its changes: its inode stands for the new version, which its
    /// handles read from now on.
    func repin(_ cube: CubeHandle) {
        let now = try? cache.current(cube.mag, cube.index)
        cube.pinned.withLock { if case .version = $0 { $0 = .version(now) } }
        inodes.setVersion(cube.inode, now?.reader.identity ?? [])
    }

    /// Calls `attempt` under the state lock until it returns a value, for up to `busyWait`:
    /// handles closed just before are released asynchronously, and a replacement may be about
    /// to commit. Each waiting request holds one of libfuse's few worker threads (the ones that
    /// serve the very closes it waits for), so only `busyWaitersAtMost` requests wait at once;
    /// others get nil at once. `replacing`: a cube this request waits to replace whole, which
    /// new opens must not overtake meanwhile.
    func waitWhileBusy<T>(replacing: MountNode? = nil, _ attempt: (inout ViewState) -> T?) -> T? {
        if let done = state.withLock({ attempt(&$0) }) { return done }
        let waiting = state.withLock { s -> Bool in
            guard s.busyWaiters < Self.busyWaitersAtMost else { return false }
            s.busyWaiters += 1
            if let replacing { s.replacementsWaiting[replacing, default: 0] += 1 }
            return true
        }
        guard waiting else { return nil }
        defer {
            state.withLock { s in
                s.busyWaiters -= 1
                if let replacing {
                    let left = (s.replacementsWaiting[replacing] ?? 1) - 1
                    s.replacementsWaiting[replacing] = left > 0 ? left : nil
                }
            }
        }
        for _ in 0..<Self.busyAttempts {
            usleep(Self.busyPause)
            if let done = state.withLock({ attempt(&$0) }) { return done }
        }
        return nil
    }

    /// How long a busy cube is waited for: up to 1 s in 10 ms steps, by at most 2 requests at once.
    static let busyAttempts = 100
    static let busyPause: UInt32 = 10_000
    static let busyWaitersAtMost = 2

    /// The properties file and editor files live in memory while they are edited: keep them small.
    static let largestTextFile = 64 << 20

    /// Why `name` cannot be an editor file in the root, or nil.
    func scratchNameProblem(_ name: String) -> String? {
        if name == MountNode.controlName { return "the name is reserved" }
        if state.withLock({ $0.layer(name) != nil }) { return "a layer has this name" }
        return nil
    }

    /// The mag of a cube that is written.
    /// - Throws: EPERM, saying why, for a format whose files cannot be rebuilt block by block.
    func writableStore(_ cube: CubeHandle) throws -> any BlockWritableStore {
        guard let writable = cube.mag as? any BlockWritableStore else {
            throw refuse(EPERM, "\(cubeName(cube)): writing \(cube.mag.format) cubes through the mount is not supported")
        }
        return writable
    }

    /// Memory a cube writer may hold decoded: about one slab of blocks (one block layer of the cube).
    func writeBudget(_ mag: any MagStore) -> Int {
        max(16 << 20, mag.blocksPerFileEdge.x * mag.blocksPerFileEdge.y * mag.blockBytes)
    }

    func currentProperties() throws -> [UInt8] {
        let path = state.withLock { $0.dataset.propertiesPath }
        guard let data = FileManager.default.contents(atPath: path) else { throw FUSEError.io }
        return Array(data)
    }

    func item(_ handle: Handle) throws -> OpenItem {
        guard let item = state.withLock({ $0.handles[handle.rawValue] }) else { throw FUSEError.badHandle }
        return item
    }

    public func read(_ inode: Inode, handle: Handle, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let offset = Int(offset)
        func serve(_ bytes: [UInt8]) -> Int {
            guard offset < bytes.count else { return 0 }
            let count = min(buffer.count, bytes.count - offset)
            bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: count) }
            return count
        }
        switch try item(handle) {
        case .cube(let cube):
            // Pending changes on this handle are made durable first, as a close makes them (the
            // bounding box grows), so reads see them; a cube truncated and not yet written back
            // whole cannot be, so it is read from the writer. (One lock when nothing is pending.)
            if cube.writer.withLock({ $0?.hasChanges == true }) {
                try commit(inode, handle, final: false, closing: false, onlyComplete: true)
                let pending = try cube.writer.withLock { writer -> Int? in
                    guard let w = writer, w.hasChanges, w.isIncomplete else { return nil }
                    do {
                        return try w.readIncomplete(offset: offset, into: buffer)
                    } catch {
                        throw translate(error, cubeName(cube))
                    }
                }
                if let pending { return pending }
            }
            do {
                let file = try readVersion(cube) ?? cache.current(cube.mag, cube.index)
                let count = try cache.readCube(cube.mag, cube.index, from: file, offset: offset, into: buffer)
                MountStatistics.add(statistics.cubeBytesRead, count)
                return count
            } catch {
                throw translate(error, "\(cube.layer)/\(cube.magName)/z\(cube.index.z)/y\(cube.index.y)/x\(cube.index.x).raw")
            }
        case .properties(let text):
            return serve(text.content.withLock { $0.bytes })
        case .scratch(let name):
            return serve(state.withLock { $0.scratch[name]?.bytes ?? [] })
        case .generated(let bytes):
            return serve(bytes)
        case .volume(let writer):
            // Pending writes are committed first, so reads see them.
            try commitVolume(writer)
            let node = MountNode.volume(layer: writer.layer, mag: writer.magName)
            do {
                return try readView(node, offset: offset, into: buffer)
            } catch {
                throw translate(error, "\(node)")
            }
        case .view(let node):
            do {
                let count = try readView(node, offset: offset, into: buffer)
                MountStatistics.add(statistics.cubeBytesRead, count)
                return count
            } catch {
                throw translate(error, "\(node)")
            }
        }
    }

    public func write(_ inode: Inode, handle: Handle, offset: UInt64, data: UnsafeRawBufferPointer) throws -> Int {
        try requireWritable()
        let offset = Int(offset)
        func checkTextSize() throws {
            guard offset + data.count <= Self.largestTextFile else {
                throw refuse(EFBIG, "files in the mount root (the properties, editor files) are at most \(Self.largestTextFile >> 20) MiB")
            }
        }
        func patch(_ bytes: inout [UInt8]) {
            if bytes.count < offset + data.count { bytes = bytes.resized(to: offset + data.count) }
            bytes.withUnsafeMutableBytes { ($0.baseAddress! + offset).copyMemory(from: data.baseAddress!, byteCount: data.count) }
        }
        switch try item(handle) {
        case .cube(let cube):
            try cube.writer.withLock { writer in
                // Mutate in place: a copy of the writer would copy every pending block it touches.
                if writer == nil {
                    let writable = try writableStore(cube)
                    writer = CubeWriter(mag: writable, index: cube.index, truncated: false, memoryBudget: writeBudget(writable))
                }
                do {
                    // Whole pages are what the kernel writes back of a memory map, which holds
                    // the version it read: merged against that version. Other writes (a
                    // `pwrite` of a few voxels) are merged against the file as it is now, so a
                    // value a program writes back on purpose counts as its change.
                    let pages = offset % 4096 == 0 && data.count % 4096 == 0
                    try writer!.write(data, at: offset, cache: cache, version: pages ? try readVersion(cube) : nil)
                } catch {
                    throw translate(error, cubeName(cube))
                }
            }
            MountStatistics.add(statistics.cubeBytesWritten, data.count)
        case .properties(let text):
            try checkTextSize()
            text.content.withLock {
                patch(&$0.bytes)
                $0.dirty = true
            }
        case .scratch(let name):
            try checkTextSize()
            state.withLock { s in
                guard s.scratch[name] != nil else { return }
                patch(&s.scratch[name]!.bytes)
                s.scratch[name]!.modified = .now
            }
        case .volume(let writer):
            do {
                try writer.write(data, at: offset, cache: cache)
            } catch {
                throw translate(error, "\(writer.layer)/\(writer.magName)/\(MountNode.volumeName)")
            }
            MountStatistics.add(statistics.cubeBytesWritten, data.count)
        case .generated, .view:
            throw FUSEError.badHandle
        }
        return data.count
    }

    /// The version of a cube's data file that its reads come from, when it keeps one
    /// (`CubeHandle.Pin`; `.some(nil)`: none, zeros); nil: whatever is on disk.
    func readVersion(_ cube: CubeHandle) throws -> OpenedFile?? {
        try cube.pinned.withLock { pinned -> OpenedFile?? in
            guard case .version(let version) = pinned else { return nil }
            let followed = try cache.following(version, cube.mag, cube.index)
            pinned = .version(followed)
            return .some(followed)
        }
    }

    func cubeName(_ cube: CubeHandle) -> String {
        "\(cube.layer)/\(cube.magName)/z\(cube.index.z)/y\(cube.index.y)/x\(cube.index.x).raw"
    }

    /// Makes a handle's pending changes durable: a cube's new WKW file, or a validated properties file.
    /// - Parameter final: the handle is being released: changes that cannot be made durable are dropped.
    /// - Parameter closing: a close (flush) or release, after which a refused new cube is gone.
    /// - Parameter onlyComplete: a cube truncated and not yet written back whole is left pending.
    func commit(_ inode: Inode, _ handle: Handle, final: Bool = false, closing: Bool = true, onlyComplete: Bool = false) throws {
        switch try item(handle) {
        case .cube(let cube):
            // A close through the only handle on the cube: its program is told of a failure, so
            // what failed is dropped then (a later release must not put it in place after all).
            let soleClose = closing && !final && state.withLock { s in (s.openCubes[cube.inode]?.handles ?? 1) <= 1 }
            var grown: Box?
            var dropped = false
            do {
                try cube.writer.withLock { writer in
                    guard writer?.hasChanges == true, !(onlyComplete && writer!.isIncomplete) else { return }
                    if writer!.isUntouchedTruncation && !final { throw FUSEError.invalid }
                    let touched = writer!.written
                    do {
                        try writer!.commit(cache: cache, directories: pendingDirectories)
                        cube.replacing.store(false, ordering: .releasing)
                        repin(cube)
                        MountStatistics.add(statistics.cubesCommitted, 1)
                    } catch {
                        // Counted where a program sees the error (close, fsync), not again at release.
                        if !final { MountStatistics.add(statistics.commitsRefused, 1) }
                        // An incomplete cube stays pending at a close: a duplicate descriptor of the
                        // same handle may still complete it (dd closes one first).
                        if final || (soleClose && !writer!.isIncomplete) { writer!.discard() }
                        dropped = soleClose && !writer!.isIncomplete
                        if closing { forgetRefusedCube(cube) }
                        // The kernel may hold the refused bytes in its page cache: drop them.
                        invalidate(inode)
                        // An incomplete cube at a close that is not the last (a duplicate descriptor)
                        // fails that close, but is logged only if the last close finds it still so.
                        if !final && writer!.isIncomplete { throw FUSEError.invalid }
                        throw translate(error, cubeName(cube))
                    }
                    grown = touched
                }
            } catch let error as FUSEError {
                if dropped { noteLostWrites(handle, error) }
                throw error
            }
            if let grown {
                state.withLock { s in s.pendingCubes[cube.node] = nil }
                let box = Box(offset: grown.offset + cube.index * cube.mag.fileShape, size: grown.size)
                try growBoundingBox(cube.layer, cube.magName, box)
                invalidate(inode)
            }
            if !final && !onlyComplete { try reportLostWrites(handle) }
        case .properties(let text):
            let pending = text.content.withLock { c -> [UInt8]? in c.dirty ? c.bytes : nil }
            guard let pending else { return }
            defer { text.content.withLock { $0.dirty = false } }
            try applyProperties(pending)
        case .volume(let writer):
            do {
                try commitVolume(writer)
            } catch let error as FUSEError {
                // As for a cube: the files not yet committed when a close fails are dropped, and
                // the handle's next fsync or close says so.
                if closing {
                    writer.discard()
                    if !final { noteLostWrites(handle, error) }
                }
                throw error
            }
            if !final { try reportLostWrites(handle) }
        case .scratch, .generated, .view:
            return
        }
    }

    /// A failed close of `handle` dropped its writes: another descriptor of the handle (a dup,
    /// a forked child's) may still write, and its next fsync or close says so.
    func noteLostWrites(_ handle: Handle, _ error: FUSEError) {
        state.withLock { $0.lostWrites[handle.rawValue] = error }
    }

    /// Fails, once, with what `noteLostWrites` noted for `handle`.
    func reportLostWrites(_ handle: Handle) throws {
        if let lost = state.withLock({ $0.lostWrites.removeValue(forKey: handle.rawValue) }) { throw lost }
    }

    /// Commits a volume handle's writes, file by file, and makes the kernel drop what it cached
    /// of the cubes and the volume they change.
    func commitVolume(_ writer: VolumeWriter) throws {
        let files: [Vec3]
        do {
            files = try writer.commit(cache: cache, directories: pendingDirectories)
        } catch {
            throw translate(error, "\(writer.layer)/\(writer.magName)/\(MountNode.volumeName)")
        }
        guard !files.isEmpty else { return }
        MountStatistics.add(statistics.cubesCommitted, files.count)
        for index in files {
            invalidate(inodes.knownInode(.cube(layer: writer.layer, mag: writer.magName, index: index)))
        }
        invalidate(inodes.knownInode(.volume(layer: writer.layer, mag: writer.magName)))
    }

    /// Grows a layer's bounding box to cover `box` (voxels of the mag).
    func growBoundingBox(_ layer: String, _ magName: String, _ box: Box) throws {
        // The properties must not describe cubes whose renames are not yet durable: when the
        // box grows, those renames are synced first (rare: only writes past the box).
        let grows = state.withLock { s -> Bool in
            guard let entry = s.mags(layer).first(where: { $0.name == magName })?.entry,
                let current = try? s.dataset.layer(layer).boundingBox
            else { return false }
            let covered = entry.mag.toMag1(box)
            return current.union(covered) != current
        }
        if grows { try syncPendingDirectories() }
        try state.withLock { s in
            guard let entry = s.mags(layer).first(where: { $0.name == magName })?.entry else { return }
            do {
                try s.dataset.growBoundingBox(layer, toCover: entry.mag.toMag1(box))
            } catch {
                throw translate(error, "growing the bounding box of layer '\(layer)'")
            }
        }
        invalidate(inodes.inode(.properties))
        // Each mag.json of the layer states the box: its size changed.
        for (name, _) in state.withLock({ $0.mags(layer) }) {
            if let info = inodes.knownInode(.magInfo(layer: layer, mag: name)) { invalidate(info) }
        }
    }

    /// Validates and applies a new properties text; an invalid one changes nothing. The edit
    /// is taken as made from the text its program last read through the mount (any program's,
    /// when it read none): it is refused if the file changed since (editors save whole files,
    /// and would undo that change).
    func applyProperties(_ bytes: [UInt8]) throws {
        let before = state.withLock { s in Set(s.layerNames) }
        let writer = FUSECaller.process
        let parent = writer.flatMap(FUSECaller.parent)
        try state.withLock { s in
            let bases = s.editBases.bases(of: writer, parent: parent)
            do {
                try s.dataset.applyEdit(Data(bytes), base: bases.last.map { Data($0) }, since: bases.first.map { Data($0) })
            } catch {
                if (error as? DatasetError)?.kind == .conflict { s.editBases.refused(by: writer, parent: parent) }
                throw translate(error, "refused the new \(Self.propertiesName)")
            }
            s.editBases.saved(bytes, by: writer, parent: parent)
            s.mags = [:]
            s.propertiesHidden = false
        }
        let after = state.withLock { s in Set(s.layerNames) }
        invalidate(inodes.inode(.properties), entries: before.union(after).map { (Inode.root, $0) } + [(Inode.root, Self.propertiesName)])
    }

    public func flush(_ inode: Inode, handle: Handle) throws {
        try commit(inode, handle)
    }

    public func fsync(_ inode: Inode, handle: Handle, dataOnly: Bool) throws {
        try commit(inode, handle, closing: false)
        try syncPendingDirectories()
    }

    public func fsyncdir(_ inode: Inode, handle: Handle, dataOnly: Bool) throws {
        try syncPendingDirectories()
    }

    /// Makes the renames of committed cubes durable (their directories fsynced).
    func syncPendingDirectories() throws {
        do {
            try pendingDirectories.syncAll()
        } catch {
            throw translate(error, "making replaced cubes durable")
        }
    }

    public func release(_ inode: Inode, handle: Handle, flags: OpenFlags) throws {
        defer {
            state.withLock { s in
                if case .cube(let cube) = s.handles[handle.rawValue] {
                    if let count = s.pendingCubes[cube.node] { s.pendingCubes[cube.node] = count > 1 ? count - 1 : nil }
                    if let open = s.openCubes[cube.inode] {
                        if open.handles > 1 { s.openCubes[cube.inode]!.handles -= 1 } else { s.openCubes[cube.inode] = nil }
                    }
                }
                s.handles[handle.rawValue] = nil
                s.lostWrites[handle.rawValue] = nil
            }
        }
        // The last handle on a cube drops what cannot be made durable; earlier ones leave it pending.
        let last: Bool = state.withLock { s in
            guard case .cube(let cube) = s.handles[handle.rawValue] else { return true }
            return (s.openCubes[cube.inode]?.handles ?? 1) <= 1
        }
        try? commit(inode, handle, final: last)
    }

    /// A refused new cube does not exist: drop it from the view and make the kernel forget its
    /// name now (the close that refused it returns before the handle is released).
    func forgetRefusedCube(_ cube: CubeHandle) {
        guard case .cube(let layer, let mag, let index) = cube.node, !PathOps.exists(cube.mag.filePath(index)) else { return }
        state.withLock { _ = $0.pendingCubes.removeValue(forKey: cube.node) }
        let parent = inodes.inode(.yDirectory(layer: layer, mag: mag, z: index.z, y: index.y))
        invalidate(nil, entries: [(parent, "x\(index.x).raw")])
    }

    public func setattr(_ inode: Inode, changes: AttributeChanges, handle: Handle?) throws -> Attributes {
        let node = try node(inode)
        guard let size = changes.size else { return try attributes(node) }  // modes and times: accepted, not stored
        try requireWritable()
        guard size <= UInt64(Int.max) else { throw FUSEError.fileTooBig }
        let size64 = Int(size)
        if case .volume = node {
            // The volume's size follows the bounding box; a truncate to that size changes nothing.
            guard size64 == (try viewSize(node)) else {
                throw refuse(EINVAL, "\(node): volume.raw is always the bounding box (\(try viewSize(node)) bytes); truncate to \(size64) refused")
            }
            return try attributes(node)
        }
        if case .cube = node {} else if size64 > Self.largestTextFile {
            throw refuse(EFBIG, "files in the mount root (the properties, editor files) are at most \(Self.largestTextFile >> 20) MiB")
        }
        switch node {
        case .cube(let layer, let mag, let index):
            if let handle, case .cube(let cube) = try item(handle) {
                if size64 == 0 {
                    // Emptying the cube replaces it whole: as for O_TRUNC (`openCube`), only
                    // when no other handle has it open.
                    let alone = waitWhileBusy(replacing: node) { s -> Bool? in
                        guard (s.openCubes[inode]?.handles ?? 1) <= 1 else { return nil }
                        cube.replacing.store(true, ordering: .releasing)
                        return true
                    }
                    guard alone != nil else {
                        throw refuse(EBUSY, "\(cubeName(cube)): open elsewhere; a cube is emptied (truncated to 0) only when nothing else has it open")
                    }
                }
                let writable = try writableStore(cube)
                try cube.writer.withLock { writer in
                    if writer == nil {
                        writer = CubeWriter(mag: writable, index: index, truncated: false, memoryBudget: writeBudget(writable))
                    }
                    do { try writer!.resize(size64) } catch { throw translate(error, cubeName(cube)) }
                }
                var attributes = try attributes(node)
                attributes.size = UInt64(size64 == 0 ? 0 : max(size64, 0))
                return attributes
            }
            let store = try magStore(layer, mag)
            guard size64 == store.fileBytes else {
                throw refuse(EINVAL, "\(layer)/\(mag)/z\(index.z)/y\(index.y)/x\(index.x).raw: a cube is always \(store.fileBytes) bytes; truncate to \(size64) refused")
            }
            return try attributes(node)
        case .properties:
            if let handle, case .properties(let text) = try item(handle) {
                text.content.withLock { c in
                    c.bytes = c.bytes.resized(to: size64)
                    c.dirty = true
                }
                var attributes = try attributes(node)
                attributes.size = size
                return attributes
            }
            // A truncate without an open file: the result must be valid like any other version.
            var bytes = try currentProperties()
            bytes = bytes.resized(to: size64)
            try applyProperties(bytes)
            return try attributes(node)
        case .scratch(let name):
            state.withLock { s in
                guard var file = s.scratch[name] else { return }
                file.bytes = file.bytes.resized(to: size64)
                file.modified = .now
                s.scratch[name] = file
            }
            return try attributes(node)
        default:
            throw FUSEError.accessDenied
        }
    }
}


extension DatasetFilesystem {
    /// At unmount or on SIGINT/SIGTERM: make every handle's pending changes durable.
    public func destroy() {
        let open = state.withLock { Array($0.handles.keys) }
        for number in open {
            do {
                try commit(.root, Handle(number), final: true)
            } catch {
                errors.record("at unmount: \(error)")
            }
        }
        do {
            try syncPendingDirectories()
        } catch {
            errors.record("at unmount: \(error)")
        }
    }
}

extension [UInt8] {
    /// Cut to `count` bytes, or extended with zeros (as truncate does).
    func resized(to count: Int) -> [UInt8] {
        count <= self.count ? Array(prefix(count)) : self + [UInt8](repeating: 0, count: count - self.count)
    }
}
