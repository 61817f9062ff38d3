import Foundation
import WKW

/// `wkfs check`: every header, jump table and block, every layer and link.
extension Dataset {
    /// Checks the whole dataset and returns every problem found (empty when it is sound).
    /// `progress` is called after each data file with (done, total).
    public func check(progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) -> [String] {
        var problems: [String] = []
        var work: [(MagDirectory, [Vec3])] = []
        for link in symlinkLayers() where !link.resolves {
            problems.append("\(layerPath(link.name)): dangling symbolic link to \(link.link)")
        }
        for layer in properties.layers {
            guard layer.dataFormat == "wkw" else {
                problems.append("\(propertiesPath): layer '\(layer.name)' has data format '\(layer.dataFormat)', which wkfs does not check")
                continue
            }
            guard PathOps.isDirectory(layerPath(layer.name)) else {
                if !symlinkLayers().contains(where: { $0.name == layer.name }) {
                    problems.append("\(layerPath(layer.name)): layer directory is missing")
                }
                continue
            }
            for entry in layer.mags {
                let magPath = magPath(layer, entry)
                let directory: MagDirectory
                do {
                    directory = try MagDirectory.open(magPath)
                } catch {
                    problems.append("\(error)")
                    continue
                }
                if directory.header.voxelType != layer.declaredVoxelType || directory.header.channels != layer.numChannels {
                    problems.append(
                        "\(magPath)/header.wkw: \(directory.header.channels)×\(directory.header.voxelType) disagrees with the properties (elementClass '\(layer.elementClass)', numChannels \(layer.numChannels))"
                    )
                }
                work.append((directory, directory.fileIndices()))
            }
        }
        let total = work.reduce(0) { $0 + $1.1.count }
        var done = 0
        for (directory, indices) in work {
            for index in indices {
                do {
                    try directory.verifyFile(index)
                } catch {
                    problems.append("\(error)")
                }
                done += 1
                progress(done, total)
            }
        }
        return problems
    }
}
