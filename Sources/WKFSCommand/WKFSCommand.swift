import ArgumentParser

/// The `wkfs` command: one subcommand per dataset operation.
@main
struct WKFSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wkfs",
        abstract: "Read, write, copy and check webknossos WKW datasets.",
        discussion: """
            Raw voxel bytes on stdin, stdout or in files are C-order (z, y, x, channel): x fastest, \
            channels interleaved, little-endian. Offsets and sizes are in the voxels of the mag named, \
            unless --mag1 says mag-1 voxels.
            """,
        version: "0.1.0",
        subcommands: [
            InfoCommand.self, CreateCommand.self, AddLayerCommand.self, AddMagCommand.self, WriteCommand.self,
            ReadCommand.self, CopyCommand.self, AddSymlinkLayerCommand.self, CheckCommand.self, MountCommand.self,
            UnmountCommand.self,
        ])
}
