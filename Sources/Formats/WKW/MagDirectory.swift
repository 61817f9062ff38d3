#if canImport(Glibc)
    import Glibc
#endif
import SystemPackage

/// One mag directory: `header.wkw` plus data files `z{Z}/y{Y}/x{X}.wkw`.
///
/// Coordinates are voxels of this mag. Region reads and writes take and give bytes in C order
/// (z, y, x, channel): x fastest, channels interleaved.
public struct MagDirectory: Sendable {
    public let path: String
    public let header: WKWHeader
    /// Whether a reader that finds a raw file left partly written by a killed writer refuses it
    /// instead of rolling the write back (a read-only mount: it must not write).
    public var repairsDisabled = false

    /// Opens a mag directory by reading its `header.wkw`.
    public static func open(_ path: String) throws -> MagDirectory {
        let headerPath = path + "/header.wkw"
        guard let file = try OpenFile.openIfExists(headerPath) else {
            throw FormatError(.notFound, path: path, "not a WKW mag directory (no header.wkw)")
        }
        let bytes = try file.read(at: 0, count: min(try file.size(), WKWHeader.byteCount))
        let (header, _) = try WKWHeader.decode(bytes, path: headerPath)
        return MagDirectory(path: path, header: header)
    }

    /// Creates a mag directory with a new `header.wkw`; refuses one that already has a header.
    public static func create(_ path: String, header: WKWHeader) throws -> MagDirectory {
        let headerPath = path + "/header.wkw"
        if PathOps.exists(headerPath) {
            throw FormatError(.alreadyExists, path: path, "mag directory already exists")
        }
        // The mag directory is claimed with an exclusive mkdir, so of two processes creating the
        // same mag one fails, and nothing but what this call made is removed on failure.
        var created = false
        if !PathOps.isDirectory(path) {
            try PathOps.makeDirectories(PathOps.dirname(path))
            do {
                try PathOps.makeDirectory(path)
                created = true
            } catch let error as FormatError where error.kind == .io(errno: EEXIST) {
                throw FormatError(.alreadyExists, path: path, "mag directory already exists")
            }
        }
        do {
            let temporary = try AtomicFile.prepare(headerPath) { file in
                try header.encoded(dataOffset: 0).withUnsafeBytes { try file.write(at: 0, $0) }
            }
            // link(2) fails when the name exists: a header another process wrote is never replaced.
            defer { PathOps.remove(temporary) }
            guard link(temporary, headerPath) == 0 else {
                let code = errno
                throw code == EEXIST
                    ? FormatError(.alreadyExists, path: path, "mag directory already exists")
                    : FormatError(.io(errno: code), path: headerPath, "cannot create: \(Errno(rawValue: code))")
            }
            try PathOps.syncDirectoryOrThrow(path)
        } catch {
            // A failed step leaves nothing behind: a retry must not find the directory.
            if created { try? PathOps.removeDirectory(path) }
            throw error
        }
        return MagDirectory(path: path, header: header)
    }

    /// The voxels covered by data file `index`.
    public func fileBox(_ index: Vec3) -> Box {
        Box(offset: index * header.fileEdge, size: Vec3(repeating: header.fileEdge))
    }

    /// The path of data file `index`.
    public func filePath(_ index: Vec3) -> String {
        "\(path)/z\(index.z)/y\(index.y)/x\(index.x).wkw"
    }

    /// The indices of the data files that exist, sorted by z, y, x; an unreadable directory
    /// reads as empty (for listings that must not fail, such as the mount's).
    public func fileIndices() -> [Vec3] {
        (try? fileIndicesOrThrow()) ?? []
    }

    /// The indices of the data files that exist, sorted by z, y, x.
    /// - Throws: `FormatError` when a directory cannot be listed, or a `z*`/`y*` name is not a
    ///   directory or an `x*.wkw` name not a regular file (the data under it would be missed).
    public func fileIndicesOrThrow() throws -> [Vec3] { try dataFiles() }

    /// The indices of the data files that exist, sorted by z, y, x; what is wrong on the way
    /// (see `fileIndicesOrThrow`) goes to `problems`.
    public func fileIndices(problems: inout [FormatError]) -> [Vec3] {
        var result: [Vec3] = []
        // Something else where a directory or data file belongs is a problem; nothing there is an
        // entry removed since the listing (a concurrent delete).
        func isDirectory(_ path: String) -> Bool {
            FormatError.collect(&problems, path: path) { try FileStatus.isDirectoryThere(path) } ?? false
        }
        func isFile(_ path: String) -> Bool {
            guard let found = FormatError.collect(&problems, path: path, { try FileStatus.ofExisting(path, followLinks: true) }),
                let status = found
            else { return false }
            if status.isRegularFile { return true }
            problems.append(FormatError(.corrupt, path: path, "is not a regular file"))
            return false
        }
        func names(_ directory: String) -> [String] {
            FormatError.collect(&problems, path: directory) { try PathOps.listIfPresent(directory) } ?? []
        }
        let planes = FormatError.collect(&problems, path: path) { try PathOps.listOrThrow(path) } ?? []
        for zName in planes {
            guard let z = GridName.index(zName, "z"), isDirectory("\(path)/\(zName)") else { continue }
            let zPath = "\(path)/\(zName)"
            for yName in names(zPath) {
                guard let y = GridName.index(yName, "y"), isDirectory("\(zPath)/\(yName)") else { continue }
                let yPath = "\(zPath)/\(yName)"
                for xName in names(yPath) {
                    guard let x = GridName.index(xName, "x", ".wkw"), isFile("\(yPath)/\(xName)") else { continue }
                    result.append(Vec3(x, y, z))
                }
            }
        }
        return result.sorted { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
    }

    func checkRegion(_ box: Box, byteCount: Int) throws {
        guard box.offset.x >= 0, box.offset.y >= 0, box.offset.z >= 0 else {
            throw FormatError(.invalidArgument, path: path, "region offset \(box.offset) is negative")
        }
        guard box.size.x >= 0, box.size.y >= 0, box.size.z >= 0 else {
            throw FormatError(.invalidArgument, path: path, "region size \(box.size) is negative")
        }
        // Keep every coordinate far from overflow: WKW file indices are small decimal numbers.
        let limit = 1 << 40
        for v in [box.offset, box.size] where v.x > limit || v.y > limit || v.z > limit {
            throw FormatError(.invalidArgument, path: path, "region \(v) is beyond the largest coordinate wkfs accepts (2^40)")
        }
        let (xy, overflowXY) = box.size.x.multipliedReportingOverflow(by: box.size.y)
        let (xyz, overflowXYZ) = xy.multipliedReportingOverflow(by: box.size.z)
        let (bytes, overflowBytes) = xyz.multipliedReportingOverflow(by: header.voxelSize)
        guard !overflowXY, !overflowXYZ, !overflowBytes, box.end.x < Int(Int32.max), box.end.y < Int(Int32.max),
            box.end.z < Int(Int32.max)
        else {
            throw FormatError(.invalidArgument, path: path, "region \(box) is too large")
        }
        _ = bytes
        let expected = box.voxelCount * header.voxelSize
        guard byteCount == expected else {
            throw FormatError(
                .invalidArgument, path: path,
                "region \(box) holds \(expected) bytes of \(header.channels)×\(header.voxelType), got \(byteCount)")
        }
    }

    /// The blocks (as absolute voxel boxes, with their Morton index) of file `index` that meet `region`.
    func blocks(ofFile index: Vec3, meeting region: Box) -> [(number: Int, box: Box)] {
        let fileBox = fileBox(index)
        guard let part = fileBox.intersection(region) else { return [] }
        let b = Vec3(repeating: header.blockLength)
        let local = Box(offset: part.offset - fileBox.offset, size: part.size)
        return local.cellRange(b).positions.map { position in
            (Morton.encode(position), Box(offset: fileBox.offset + position * b, size: b))
        }
    }
}
