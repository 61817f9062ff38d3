import Formats

/// Where bytes of a raw cube (C order z, y, x, channel) lie in voxel space.
struct CubeGeometry: Sendable {
    let header: WKWHeader

    var side: Int { header.fileEdge }
    var voxelSize: Int { header.voxelSize }
    var rowBytes: Int { side * voxelSize }
    var cubeBytes: Int { header.fileByteCount }

    /// The boxes (cube-local voxels, whole rows along x) that cover bytes `range`, in byte order,
    /// with the byte offset where the first box starts.
    func rowBoxes(_ range: Range<Int>) -> (start: Int, boxes: [Box]) {
        let firstRow = range.lowerBound / rowBytes
        let lastRow = (range.upperBound - 1) / rowBytes
        var boxes: [Box] = []
        var row = firstRow
        while row <= lastRow {
            let z = row / side
            let y = row % side
            if y == 0 && lastRow >= row + side - 1 {
                // Whole planes: as many as the range covers.
                let planes = (lastRow - row + 1) / side
                boxes.append(Box(offset: Vec3(0, 0, z), size: Vec3(side, side, planes)))
                row += planes * side
            } else {
                let endY = min(side, y + (lastRow - row + 1))
                boxes.append(Box(offset: Vec3(0, y, z), size: Vec3(side, endY - y, 1)))
                row += endY - y
            }
        }
        return (firstRow * rowBytes, boxes)
    }

    /// The cube-local voxel box that bytes `range` touch (whole rows when it spans rows).
    func touchedBox(_ range: Range<Int>) -> Box {
        let first = range.lowerBound / voxelSize
        let last = (range.upperBound - 1) / voxelSize
        let (z0, y0, x0) = (first / (side * side), first / side % side, first % side)
        let (z1, y1, x1) = (last / (side * side), last / side % side, last % side)
        if z0 == z1 && y0 == y1 { return Box(offset: Vec3(x0, y0, z0), size: Vec3(x1 - x0 + 1, 1, 1)) }
        if z0 == z1 { return Box(offset: Vec3(0, y0, z0), size: Vec3(side, y1 - y0 + 1, 1)) }
        return Box(offset: Vec3(0, 0, z0), size: Vec3(side, side, z1 - z0 + 1))
    }
}
