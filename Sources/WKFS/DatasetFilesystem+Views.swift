import Foundation
import Synchronization
import Formats
import WebKnossos

/// The generated views of a mag, for tools that do not know the cube grid: `volume.raw` (the
/// bounding box as one array) with `volume.nhdr`, a NRRD header beside each cube, and
/// `slices/z{N}.tif` (one TIFF per z plane). Nothing is stored: every byte is made when read,
/// from the same block cache as the cubes.
extension DatasetFilesystem {
    /// A mag's volume: its layer's bounding box snapped outward to the mag's grid, in mag voxels.
    func volume(_ layer: String, _ mag: String) throws -> (box: Box, mag: Mag, store: any MagStore) {
        let (properties, entry) = try state.withLock { s -> (LayerProperties, MagProperties) in
            guard let properties = s.layer(layer), let entry = s.mags(layer).first(where: { $0.name == mag })?.entry else {
                throw FUSEError.noEntry
            }
            return (properties, entry)
        }
        return (entry.mag.fromMag1(properties.boundingBox), entry.mag, try magStore(layer, mag))
    }

    /// `z{N}.tif` names: N zero-padded to the width of the largest, so that names sort.
    static func sliceName(_ z: Int, planes: Int) -> String {
        let width = String(max(0, planes - 1)).count
        let digits = String(z)
        return "z" + String(repeating: "0", count: max(0, width - digits.count)) + digits + ".tif"
    }

    static func sliceIndex(_ name: String, planes: Int) -> Int? {
        guard name.hasPrefix("z"), name.hasSuffix(".tif"), let z = Int(name.dropFirst().dropLast(4)), z >= 0, z < planes,
            sliceName(z, planes: planes) == name
        else { return nil }
        return z
    }

    /// The physical size of one voxel of a mag (voxel size × mag), and the unit.
    func spacing(_ mag: Mag) -> (values: [Double], unit: String) {
        let properties = state.withLock { $0.dataset.properties }
        return (zip(properties.voxelSize, mag.factors.array).map { $0 * Double($1) }, properties.unit)
    }

    func nrrdHeader(_ node: MountNode) throws -> [UInt8] {
        let header: NRRDHeader
        switch node {
        case .volumeHeader(let layer, let mag):
            let (box, factors, store) = try volume(layer, mag)
            let (spacing, unit) = spacing(factors)
            header = NRRDHeader(
                voxelType: store.voxelType, channels: store.channels, size: box.size, spacing: spacing,
                origin: (0..<3).map { Double(box.offset.array[$0]) * spacing[$0] }, unit: unit, dataFile: MountNode.volumeName,
                comment: "wkfs: \(layer)/\(mag)/\(MountNode.volumeName), the bounding box of mag \(mag) at \(box.offset)")
        case .cubeHeader(let layer, let mag, let index):
            let (_, factors, store) = try volume(layer, mag)
            let (spacing, unit) = spacing(factors)
            let offset = index * store.fileShape
            header = NRRDHeader(
                voxelType: store.voxelType, channels: store.channels, size: store.fileShape, spacing: spacing,
                origin: (0..<3).map { Double(offset.array[$0]) * spacing[$0] }, unit: unit, dataFile: "x\(index.x).raw",
                comment: "wkfs: \(layer)/\(mag)/z\(index.z)/y\(index.y)/x\(index.x).raw, voxels from \(offset) of mag \(mag)")
        default:
            throw FUSEError.invalid
        }
        return Array(header.text.utf8)
    }

    func slicePlane(_ layer: String, _ mag: String) throws -> (plane: TIFFPlane, box: Box, store: any MagStore) {
        let (box, factors, store) = try volume(layer, mag)
        let (spacing, unit) = spacing(factors)
        let plane = TIFFPlane(
            width: box.size.x, height: box.size.y, voxelType: store.voxelType, channels: store.channels,
            pixelSize: (spacing[0], spacing[1], spacing[2]), unit: unit)
        return (plane, box, store)
    }

    /// Bytes of a generated view file.
    func viewSize(_ node: MountNode) throws -> Int {
        switch node {
        case .volume(let layer, let mag):
            let (box, _, store) = try volume(layer, mag)
            return box.voxelCount * store.voxelBytes
        case .volumeHeader, .cubeHeader:
            return try nrrdHeader(node).count
        case .slice(let layer, let mag, _):
            let plane = try slicePlane(layer, mag).plane
            return plane.header.count + plane.pixelBytes
        default:
            throw FUSEError.invalid
        }
    }

    /// Reads a generated view file from `offset` into `destination`; returns the bytes read.
    func readView(_ node: MountNode, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        switch node {
        case .volume(let layer, let mag):
            let (box, _, store) = try volume(layer, mag)
            return try cache.readVolume(store, box, offset: offset, into: destination)
        case .slice(let layer, let mag, let z):
            let (plane, box, store) = try slicePlane(layer, mag)
            let header = plane.header
            let end = min(header.count + plane.pixelBytes, offset + destination.count)
            guard offset < end, let base = destination.baseAddress else { return 0 }
            var position = offset
            if position < header.count {
                let count = min(end, header.count) - position
                header.withUnsafeBytes { base.copyMemory(from: $0.baseAddress! + position, byteCount: count) }
                position += count
            }
            if position < end {
                let planeBox = Box(offset: box.offset + Vec3(0, 0, z), size: Vec3(box.size.x, box.size.y, 1))
                let part = UnsafeMutableRawBufferPointer(rebasing: destination[(position - offset)..<(end - offset)])
                position += try cache.readVolume(store, planeBox, offset: position - header.count, into: part)
            }
            return position - offset
        default:
            throw FUSEError.invalid
        }
    }
}
