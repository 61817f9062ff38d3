/// Opening and creating mags by format: the one place that names each format's store, so that
/// a new format is one more case here and one more implementation of `MagStore`.
public enum MagStores {
    /// Opens the mag at `path` in `format`.
    /// - Throws: `FormatError` when it is not a mag of that format.
    public static func open(_ format: DataFormat, _ path: String) throws -> any MagStore {
        switch format {
        case .wkw: try MagDirectory.open(path)
        case .zarr3: try Zarr3Array.open(path)
        }
    }

    /// `layout` as a mag of `format` records it (a compression the format lacks becomes its
    /// standard one; a format without a fill value fills with zeros), so it compares equal to
    /// the `layout` of such a mag.
    /// - Throws: `FormatError(.invalidArgument)` when the format cannot hold it; its `reason`
    ///   says why (block or file length, chunk and shard shape).
    public static func normalized(_ layout: MagLayout, for format: DataFormat) throws -> MagLayout {
        switch format {
        case .wkw:
            return try WKWHeader(layout).layout
        case .zarr3:
            if let problem = Zarr3Array.shapeProblem(chunk: Vec3(repeating: layout.blockEdge), shard: Vec3(repeating: layout.fileEdge)) {
                throw FormatError(.invalidArgument, path: "", problem)
            }
            var normalized = layout
            normalized.compression = layout.isCompressed ? .standard : .none
            return normalized
        }
    }

    /// Creates a mag of `format` with `layout` at `path`, which must not hold one; `size` is the
    /// extent (this mag's voxels) a format with a shape (Zarr3) covers at first.
    /// - Throws: `FormatError` (`.alreadyExists` when the mag exists); nothing is left on failure.
    public static func create(at path: String, format: DataFormat, layout: MagLayout, size: Vec3) throws -> any BlockWritableStore {
        switch format {
        case .wkw:
            guard layout.fillsWithZero else {
                throw FormatError(.invalidArgument, path: path, "a WKW mag has no fill value: missing data is 0")
            }
            return try MagDirectory.create(path, header: WKWHeader(layout))
        case .zarr3:
            return try Zarr3Array.create(
                path, voxelType: layout.voxelType, channels: layout.channels, chunk: Vec3(repeating: layout.blockEdge),
                shard: Vec3(repeating: layout.fileEdge), compress: layout.isCompressed, size: size, fill: layout.fill)
        }
    }

    /// Gives `target` (a new mag of the same format) what `source` records beside its layout
    /// that a rebuild must keep: a Zarr3 array's `attributes`. Nothing for WKW.
    public static func keepAttributes(of source: any MagStore, in target: any MagStore) throws {
        guard let source = source as? Zarr3Array, let target = target as? Zarr3Array else { return }
        try target.replaceAttributes(with: source.attributes)
    }

    /// The mag an interrupted run made at `path` when it has `layout` (normalized), else a new one.
    public static func openOrCreate(at path: String, format: DataFormat, layout: MagLayout, size: Vec3) throws -> any BlockWritableStore {
        if let existing = try? open(format, path) as? any BlockWritableStore {
            guard existing.layout == layout else {
                throw FormatError(
                    .alreadyExists, path: path,
                    "holds a mag unlike the one to make here (block, file or chunk shape, compression or fill value differ: made by a run with other options?)")
            }
            return existing
        }
        return try create(at: path, format: format, layout: layout, size: size)
    }
}
