import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// The `wkfs` command: one subcommand per dataset operation.
@main
struct WKFSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wkfs",
        abstract: "Read, write, copy, mount and check webknossos datasets (WKW and Zarr3 layers).",
        discussion: """
            Raw voxel bytes on stdin, stdout or in files are C-order (z, y, x, channel): x fastest, \
            channels interleaved, little-endian. Offsets and sizes are in the voxels of the mag named, \
            unless --mag1 says mag-1 voxels.
            """,
        version: "0.1.0",
        subcommands: [
            InfoCommand.self, CreateCommand.self, AddLayerCommand.self, AddMagCommand.self, WriteCommand.self,
            ReadCommand.self, CopyCommand.self, DownsampleCommand.self, CompressCommand.self, AddSymlinkLayerCommand.self, CheckCommand.self, MountCommand.self,
            UnmountCommand.self,
        ])

    /// Raises the soft limit of open files to the hard one before any command runs: a region of
    /// many small data files (file length 1) and a mount's open cubes need more than the common
    /// default of 1,024.
    static func main() {
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        main(nil)
    }
}
