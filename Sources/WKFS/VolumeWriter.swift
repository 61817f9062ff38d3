import Foundation
import Synchronization
import Formats

/// The pending writes of one writable handle of `volume.raw`: one cube writer per data file the
/// writes touch, each committed as a cube is (its whole file replaced atomically under its lock,
/// blocks that other writers changed meanwhile merged byte by byte).
final class VolumeWriter: Sendable {
    let layer: String
    let magName: String
    let mag: any BlockWritableStore
    /// The volume: the bounding box in mag voxels.
    let box: Box
    let memoryBudget: Int
    let writers = Mutex<[Vec3: CubeWriter]>([:])

    init(layer: String, magName: String, mag: any BlockWritableStore, box: Box, memoryBudget: Int) {
        self.layer = layer
        self.magName = magName
        self.mag = mag
        self.box = box
        self.memoryBudget = memoryBudget
    }

    var byteCount: Int { box.voxelCount * mag.voxelBytes }

    /// Writes volume bytes at `offset`: row by row, each row split at the data files' x bounds.
    func write(_ data: UnsafeRawBufferPointer, at offset: Int, cache: BlockCache) throws {
        let v = mag.voxelBytes
        let rowBytes = box.size.x * v
        guard offset + data.count <= byteCount else {
            throw FUSEError(EFBIG, "write of \(data.count) bytes at \(offset) passes the volume's end (\(byteCount) bytes)")
        }
        let edge = mag.fileShape
        try writers.withLock { writers in
            var at = offset
            let end = offset + data.count
            while at < end {
                let row = at / rowBytes
                let rowStart = row * rowBytes
                let y = row % box.size.y, z = row / box.size.y
                let xByte = at - rowStart
                // The data file holding this voxel, and where this row leaves it.
                let voxel = box.offset + Vec3(xByte / v, y, z)
                let file = voxel.floorDiv(edge)
                let fileStartX = file.x * edge.x - box.offset.x  // in volume voxels
                let stop = min(end, rowStart + rowBytes, rowStart + (fileStartX + edge.x) * v)
                let local = voxel - file * edge
                let cubeOffset = (local.z * edge.y + local.y) * edge.x * v + (xByte - fileStartX * v)
                if writers[file] == nil {
                    writers[file] = CubeWriter(mag: mag, index: file, truncated: false, memoryBudget: memoryBudget)
                }
                try writers[file]!.write(UnsafeRawBufferPointer(rebasing: data[(at - offset)..<(stop - offset)]), at: cubeOffset, cache: cache)
                at = stop
            }
        }
    }

    /// Drops the pending writes of every data file not yet committed.
    func discard() {
        writers.withLock { $0 = [:] }
    }

    /// Commits every touched data file; returns the files committed.
    func commit(cache: BlockCache, directories: PendingDirectorySyncs) throws -> [Vec3] {
        try writers.withLock { writers in
            var done: [Vec3] = []
            for index in writers.keys.sorted(by: { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }) {
                try writers[index]!.commit(cache: cache, directories: directories)
                writers[index] = nil
                done.append(index)
            }
            return done
        }
    }
}
