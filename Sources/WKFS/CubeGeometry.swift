import Formats

/// Where bytes of a raw cube (C order z, y, x, channel) lie in voxel space.
struct CubeGeometry: Sendable {
    /// Voxels of the cube along x, y, z (a WKW file is a cube; a Zarr3 shard need not be).
    let shape: Vec3
    let voxelSize: Int

    init(_ mag: any MagStore) {
        shape = mag.fileShape
        voxelSize = mag.voxelBytes
    }

    var rowBytes: Int { shape.x * voxelSize }
    var cubeBytes: Int { shape.volume * voxelSize }

    /// The boxes (cube-local voxels, whole rows along x) that cover bytes `range`, in byte order,
    /// with the byte offset where the first box starts.
    func rowBoxes(_ range: Range<Int>) -> (start: Int, boxes: [Box]) {
        let firstRow = range.lowerBound / rowBytes
        let lastRow = (range.upperBound - 1) / rowBytes
        var boxes: [Box] = []
        var row = firstRow
        while row <= lastRow {
            let z = row / shape.y
            let y = row % shape.y
            if y == 0 && lastRow >= row + shape.y - 1 {
                // Whole planes: as many as the range covers.
                let planes = (lastRow - row + 1) / shape.y
                boxes.append(Box(offset: Vec3(0, 0, z), size: Vec3(shape.x, shape.y, planes)))
                row += planes * shape.y
            } else {
                let endY = min(shape.y, y + (lastRow - row + 1))
                boxes.append(Box(offset: Vec3(0, y, z), size: Vec3(shape.x, endY - y, 1)))
                row += endY - y
            }
        }
        return (firstRow * rowBytes, boxes)
    }

    /// The cube-local voxel box that bytes `range` touch (whole rows when it spans rows).
    func touchedBox(_ range: Range<Int>) -> Box {
        let first = range.lowerBound / voxelSize
        let last = (range.upperBound - 1) / voxelSize
        let plane = shape.x * shape.y
        let (z0, y0, x0) = (first / plane, first / shape.x % shape.y, first % shape.x)
        let (z1, y1, x1) = (last / plane, last / shape.x % shape.y, last % shape.x)
        if z0 == z1 && y0 == y1 { return Box(offset: Vec3(x0, y0, z0), size: Vec3(x1 - x0 + 1, 1, 1)) }
        if z0 == z1 { return Box(offset: Vec3(0, y0, z0), size: Vec3(shape.x, y1 - y0 + 1, 1)) }
        return Box(offset: Vec3(0, 0, z0), size: Vec3(shape.x, shape.y, z1 - z0 + 1))
    }
}
