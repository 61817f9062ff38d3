import Foundation
import Synchronization
import Formats
import WebKnossos

/// Making and removing names: mags, z/y directories, linked layers, editor files.
extension DatasetFilesystem {
    public func mkdir(parent: Inode, name: String, permissions: UInt16) throws -> Entry {
        try requireWritable()
        let parentNode = try node(parent)
        let created: MountNode
        switch parentNode {
        case .linkTarget(let layer):
            throw refuse(EPERM, "mkdir \(layer)/\(name): the mags of a linked layer belong to the other dataset; add them there")
        case .layer(let layer):
            guard let mag = try? Mag(parsing: name), mag.shortName == name || mag.longName == name else {
                throw refuse(EINVAL, "\(layer)/\(name): a mag directory is named like 1, 2 or 2-2-1")
            }
            try state.withLock { s in
                do {
                    try s.dataset.addMagLikeOthers(layer, name)
                } catch {
                    throw translate(error, "mkdir \(layer)/\(name)")
                }
            }
            created = .mag(layer: layer, mag: mag.shortName)
            invalidate(inodes.inode(.properties))
        case .mag(let layer, let mag):
            guard let z = GridName.index(name, "z") else {
                throw refuse(EINVAL, "\(layer)/\(mag)/\(name): directories here are named z{Z}")
            }
            created = .zDirectory(layer: layer, mag: mag, z: z)
            try makeDirectory(created, layer, mag, path: state.withLock { $0.magPath(layer, mag) }.map { "\($0)/\(name)" })
        case .zDirectory(let layer, let mag, let z):
            guard let y = GridName.index(name, "y") else {
                throw refuse(EINVAL, "\(layer)/\(mag)/z\(z)/\(name): directories here are named y{Y}")
            }
            created = .yDirectory(layer: layer, mag: mag, z: z, y: y)
            try makeDirectory(created, layer, mag, path: state.withLock { $0.magPath(layer, mag) }.map { "\($0)/z\(z)/\(name)" })
        default:
            throw refuse(EPERM, "mkdir \(name): only mags (in a layer) and z/y directories (in a mag) can be made; add layers through \(Self.propertiesName)")
        }
        return replying(Entry(attributes: try attributes(created)), created)
    }

    /// Makes a `zZ` or `yY` directory of a mag: on disk where the format keeps its files in
    /// such directories, in the view only otherwise.
    private func makeDirectory(_ node: MountNode, _ layer: String, _ mag: String, path: String?) throws {
        let store = try magStore(layer, mag)
        if store.filesInPlaneDirectories { return try makeDiskDirectory(path) }
        let exists: Bool
        switch node {
        case .zDirectory(_, _, let z): exists = try store.hasFilePlane(z: z)
        case .yDirectory(_, _, let z, let y): exists = try store.hasFileRow(y: y, z: z)
        default: exists = false
        }
        let inserted = state.withLock { s in !exists && s.madeDirectories.insert(node).inserted }
        if !inserted { throw FUSEError.exists }
    }

    private func makeDiskDirectory(_ path: String?) throws {
        guard let path else { throw FUSEError.noEntry }
        if PathOps.exists(path) { throw FUSEError.exists }
        do {
            try PathOps.makeDirectory(path)
        } catch {
            throw translate(error, "mkdir")
        }
    }

    public func rmdir(parent: Inode, name: String) throws {
        try requireWritable()
        switch try node(parent) {
        case .linkTarget(let layer):
            throw refuse(EPERM, "rmdir \(layer)/\(name): the mags of a linked layer belong to the other dataset")
        case .layer(let layer):
            guard let entry = state.withLock({ $0.mags(layer).first { $0.name == name }?.entry }) else { throw FUSEError.noEntry }
            try state.withLock { s in
                do {
                    try s.dataset.removeEmptyMag(layer, entry.mag)
                    s.mags[layer + "/" + name] = nil
                } catch let error as DatasetError where error.kind == .invalidArgument {
                    throw FUSEError(ENOTEMPTY, "\(layer)/\(name) holds data")
                } catch {
                    throw translate(error, "rmdir \(layer)/\(name)")
                }
            }
            invalidate(inodes.inode(.properties))
        case .mag(let layer, let mag):
            if try !magStore(layer, mag).filesInPlaneDirectories {
                guard let z = GridName.index(name, "z") else { throw FUSEError.noEntry }
                return try removeMadeDirectory(.zDirectory(layer: layer, mag: mag, z: z), layer, mag)
            }
            try removeDiskDirectory(state.withLock { $0.magPath(layer, mag) }.map { "\($0)/\(name)" }, name.first == "z")
        case .zDirectory(let layer, let mag, let z):
            if try !magStore(layer, mag).filesInPlaneDirectories {
                guard let y = GridName.index(name, "y") else { throw FUSEError.noEntry }
                return try removeMadeDirectory(.yDirectory(layer: layer, mag: mag, z: z, y: y), layer, mag)
            }
            try removeDiskDirectory(state.withLock { $0.magPath(layer, mag) }.map { "\($0)/z\(z)/\(name)" }, name.first == "y")
        default:
            throw FUSEError.notPermitted
        }
    }

    /// Removes a directory that exists in the view only; one holding cubes (on disk or being
    /// created) is not empty.
    private func removeMadeDirectory(_ node: MountNode, _ layer: String, _ mag: String) throws {
        let store = try magStore(layer, mag)
        try state.withLock { s in
            let holds: Bool
            switch node {
            case .zDirectory(_, _, let z):
                holds = try store.hasFilePlane(z: z) || s.madeDirectories.contains { if case .yDirectory(layer, mag, z, _) = $0 { true } else { false } }
                    || s.pendingCubes.keys.contains { if case .cube(layer, mag, let i) = $0 { i.z == z } else { false } }
            case .yDirectory(_, _, let z, let y):
                holds = try store.hasFileRow(y: y, z: z)
                    || s.pendingCubes.keys.contains { if case .cube(layer, mag, let i) = $0 { i.z == z && i.y == y } else { false } }
            default: holds = false
            }
            if holds { throw FUSEError.notEmpty }
            guard s.madeDirectories.remove(node) != nil else { throw FUSEError.noEntry }
        }
    }

    private func removeDiskDirectory(_ path: String?, _ validName: Bool) throws {
        guard let path, validName, PathOps.isDirectory(path) else { throw FUSEError.noEntry }
        if !PathOps.list(path).isEmpty { throw FUSEError.notEmpty }
        do {
            try PathOps.removeDirectory(path)
        } catch {
            throw translate(error, "rmdir")
        }
    }

    public func unlink(parent: Inode, name: String) throws {
        try requireWritable()
        guard case .root = try node(parent) else {
            throw refuse(EPERM, "rm \(name): cubes cannot be removed through the mount")
        }
        let removed = try state.withLock { s -> Bool in
            if s.scratch.removeValue(forKey: name) != nil { return false }
            if s.layer(name) != nil && s.isLinked(name) {
                do {
                    try s.dataset.removeSymlinkLayer(name)
                } catch {
                    throw translate(error, "rm \(name)")
                }
                return true
            }
            if name == Self.propertiesName && !s.propertiesHidden {
                // Removed to be replaced (mv from another file system): the file on disk stays
                // until a valid new version is written.
                s.propertiesHidden = true
                return true
            }
            if s.layer(name) != nil { throw FUSEError.isDirectory }
            throw FUSEError.noEntry
        }
        if removed { invalidate(inodes.inode(.properties), entries: [(Inode.root, name)]) }
    }

    public func symlink(target: String, parent: Inode, name: String) throws -> Entry {
        try requireWritable()
        guard case .root = try node(parent) else {
            throw refuse(EPERM, "ln -s \(target) \(name): linked layers live in the mount root")
        }
        if name.hasPrefix(".#") {
            // An editor's lock link (emacs): kept in memory like other editor files.
            state.withLock { $0.scratch[name] = ScratchFile(bytes: Array(target.utf8), modified: .now, isLink: true) }
            return replying(Entry(attributes: try attributes(.scratch(name)), entryTimeout: 0), .scratch(name))
        }
        try state.withLock { s in
            let resolved = target.hasPrefix("/") ? target : s.dataset.path + "/" + target
            do {
                try s.dataset.addSymlinkLayer(target: resolved, name: name)
            } catch {
                throw translate(error, "ln -s \(target) \(name)")
            }
        }
        invalidate(inodes.inode(.properties))
        return replying(Entry(attributes: try attributes(.layer(name)), entryTimeout: 0), .layer(name))
    }

    public func rename(parent: Inode, name: String, newParent: Inode, newName: String, flags: RenameFlags) throws {
        try requireWritable()
        guard case .root = try node(parent), case .root = try node(newParent) else {
            throw refuse(EPERM, "mv \(name) \(newName): only files in the mount root can be renamed")
        }
        if name == newName { return }
        let properties = Self.propertiesName
        if newName == properties {
            // An editor's new version (sed -i, many editors): validate it, then it becomes the file.
            guard let scratch = state.withLock({ $0.scratch[name] }) else {
                throw state.withLock({ $0.layer(name) != nil }) ? FUSEError.notPermitted : FUSEError.noEntry
            }
            try applyProperties(scratch.bytes)
            state.withLock { _ = $0.scratch.removeValue(forKey: name) }
            inodes.rename(.scratch(name), to: .properties)
            invalidate(nil, entries: [(Inode.root, name)])
            return
        }
        if let why = scratchNameProblem(newName) { throw refuse(EINVAL, "mv \(name) \(newName): \(why)") }
        if name == properties {
            // Rename-away (vim, emacs backups): the backup lives in memory; the file on disk stays.
            let bytes = try currentProperties()
            state.withLock { s in
                s.scratch[newName] = ScratchFile(bytes: bytes, modified: .now)
                s.propertiesHidden = true
            }
            inodes.rename(.properties, to: .scratch(newName))
            invalidate(nil, entries: [(Inode.root, properties), (Inode.root, newName)])
            return
        }
        try state.withLock { s in
            guard let file = s.scratch.removeValue(forKey: name) else {
                throw s.layer(name) != nil ? FUSEError.notPermitted : FUSEError.noEntry
            }
            s.scratch[newName] = file
        }
        inodes.rename(.scratch(name), to: .scratch(newName))
        invalidate(nil, entries: [(Inode.root, name), (Inode.root, newName)])
    }
}
