import Foundation
import Formats

/// Symbolic-link layers: a layer directory that is a link to another dataset's layer.
extension Dataset {
    /// Adds a layer that is a relative symbolic link to `target`, another dataset's layer directory,
    /// with a copy of that layer's properties entry under the new name.
    @discardableResult
    public mutating func addSymlinkLayer(target: String, name: String? = nil) throws -> LayerProperties {
        let targetPath = Self.normalize(target)
        guard PathOps.isDirectory(targetPath) else {
            throw DatasetError(.notFound, targetPath, "not a directory")
        }
        let realTarget = Self.realPath(targetPath)
        let targetName = URL(fileURLWithPath: realTarget).lastPathComponent
        let foreign = try Dataset.open(PathOps.dirname(realTarget))
        guard var entry = foreign.properties.layer(named: targetName) else {
            throw DatasetError(.notFound, targetPath, "not a layer of the dataset \(foreign.path) (it has no layer '\(targetName)')")
        }
        let newName = name ?? targetName
        if let why = LayerProperties.invalidNameReason(newName) { throw DatasetError(.invalidArgument, "--name", why) }
        if properties.layer(named: newName) != nil || PathOps.exists(layerPath(newName)) {
            throw DatasetError(.alreadyExists, layerPath(newName), "layer already exists")
        }
        if Self.realPath(path) == PathOps.dirname(realTarget) {
            throw DatasetError(.invalidArgument, targetPath, "is a layer of this dataset itself")
        }
        let linkText = Self.relativePath(from: Self.realPath(path), to: realTarget)
        do {
            try FileManager.default.createSymbolicLink(atPath: layerPath(newName), withDestinationPath: linkText)
        } catch {
            throw DatasetError(.io, layerPath(newName), "cannot create symbolic link: \(Self.reason(error))")
        }
        entry.name = newName
        for i in entry.mags.indices {
            let magDirectory = foreign.magPath(entry, entry.mags[i])
            let dirName = URL(fileURLWithPath: magDirectory).lastPathComponent
            if entry.mags[i].path != nil || !entry.usesWkwResolutions { entry.mags[i].path = "./\(newName)/\(dirName)" }
        }
        // Keep this dataset's schema for the new entry.
        entry.usesWkwResolutions = properties.layers.first?.usesWkwResolutions ?? false
        entry.usesSnakeNumChannels = properties.layers.first?.usesSnakeNumChannels ?? false
        let link = layerPath(newName)
        try appendLayer(entry) { PathOps.remove(link) }
        return entry
    }

    /// The canonical absolute path (links resolved), or the path itself when it cannot be resolved.
    static func realPath(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    }

    /// A relative path from directory `base` to `target` (both absolute and canonical).
    static func relativePath(from base: String, to target: String) -> String {
        let from = base.split(separator: "/")
        let to = target.split(separator: "/")
        var common = 0
        while common < min(from.count, to.count) && from[common] == to[common] { common += 1 }
        let ups = Array(repeating: "..", count: from.count - common)
        return (ups + to[common...].map(String.init)).joined(separator: "/")
    }

    /// Layers whose directory is a symbolic link, with the link's text and whether it resolves.
    public func symlinkLayers() -> [(name: String, link: String, resolves: Bool)] {
        properties.layers.compactMap { layer in
            guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: layerPath(layer.name)) else {
                return nil
            }
            return (layer.name, link, PathOps.isDirectory(layerPath(layer.name)))
        }
    }
}
