import ArgumentParser
import Foundation
import WKFS
import Formats

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount a dataset as a directory of raw cubes (FUSE).",
        discussion: """
            Options (-o, comma-separated): ro, allow_other, cache_size=SIZE (memory for decoded blocks, \
            e.g. 512M or 2G; default 256M), direct_io (cubes opened read-only bypass the kernel's page \
            cache: faster streaming of large cubes, but no read-only mmap), zarr (read-only: the dataset \
            as a Zarr v3 dataset of uncompressed shards, for zarr-python, tensorstore and OME-Zarr readers; \
            WKW is decoded on the fly), debug.
            Example: wkfs mount my_dataset /mnt/ds -o ro,cache_size=1G && ls /mnt/ds/color/1
            Unmount with: wkfs unmount /mnt/ds
            """)

    @Argument(help: "The dataset directory.") var dataset: String
    @Argument(help: "An empty directory to mount it on.") var mountPoint: String
    @Flag(name: .customShort("f"), help: "Stay in the foreground (do not daemonize).") var foreground = false
    @Option(name: .customShort("o"), help: "Mount options: ro, allow_other, cache_size=SIZE, direct_io, zarr, debug.") var options: [String] = []

    func run() throws {
        var fsOptions = DatasetFilesystem.Options()
        var fuseOptions = ["default_permissions", "subtype=wkfs"]
        var zarr = false
        for item in options.flatMap({ $0.split(separator: ",").map(String.init) }) where !item.isEmpty {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            switch parts[0] {
            case "ro":
                fsOptions.readOnly = true
                fuseOptions.append("ro")
            case "rw", "defaults", "auto", "noauto", "nofail", "_netdev", "user", "nouser", "users", "dev", "nodev",
                "suid", "nosuid", "exec", "noexec":
                continue
            case "allow_other", "debug":
                fuseOptions.append(parts[0])
            case "direct_io":
                fsOptions.directIO = true
            case "zarr":
                zarr = true
            case "cache_size":
                guard parts.count == 2, let bytes = Self.parseSize(parts[1]) else {
                    throw CLIError("-o \(item): expected a size like 512M or 2G")
                }
                fsOptions.cacheSize = bytes
            default:
                if parts[0].hasPrefix("x-") { continue }
                throw CLIError("-o \(item): unknown mount option (known: ro, allow_other, cache_size=SIZE, direct_io, zarr, debug)")
            }
        }
        let datasetPath = URL(fileURLWithPath: dataset).standardizedFileURL.path
        let mountPath = URL(fileURLWithPath: mountPoint).standardizedFileURL.path
        fuseOptions.append("fsname=\(datasetPath)")
        MountMemory.configure()
        let log = FUSESession.logToStandardError
        let filesystem: any FUSEFilesystem
        if zarr {
            if !fuseOptions.contains("ro") { fuseOptions.append("ro") }
            filesystem = try ZarrViewFilesystem(datasetPath: datasetPath, cacheSize: fsOptions.cacheSize, log: log)
        } else {
            filesystem = try DatasetFilesystem(datasetPath: datasetPath, options: fsOptions, log: log)
        }
        let session = try FUSESession(filesystem: filesystem, mountPoint: mountPath, options: fuseOptions, log: log)
        try session.mount()
        if !foreground {
            do {
                try session.daemonize()
            } catch {
                session.unmount()
                throw error
            }
        }
        // Once the loop ran, stderr's stdio lock may be held forever: when the kernel answers an
        // unmount from outside with ECONNABORTED, libfuse's workers report it with perror and the
        // loop cancels them, possibly inside perror. Any later stdio use of stderr (an error
        // message, the flush at exit) would then block: seen with gdb as a mount that never exits
        // after its unmount. So report with write(2) and leave with _exit, skipping exit's flush.
        var status: Int32 = 0
        do {
            try session.run()
        } catch {
            log("Error: \(error)")
            status = 1
        }
        session.unmount()
        _exit(status)
    }

    /// `512M`, `2G`, `65536`, `64K` -> bytes.
    static func parseSize(_ text: String) -> Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        if digits.hasSuffix("B") { digits.removeLast() }
        var factor = 1
        if let last = digits.last, let unit = units[last] {
            factor = unit
            digits.removeLast()
        }
        guard let value = Int(digits), value >= 0 else { return nil }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: factor)
        return overflow ? nil : bytes
    }
}

struct UnmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmount",
        abstract: "Unmount a mounted dataset (pending writes are flushed first).",
        discussion: "Example: wkfs unmount /mnt/ds")

    @Argument(help: "The mount point.") var mountPoint: String
    @Flag(help: "Detach even if busy (lazy unmount).") var lazy = false

    func run() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["fusermount3", "-u"] + (lazy ? ["-z"] : []) + [mountPoint]
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            throw CLIError("\(mountPoint): unmount failed (is it a wkfs mount, or busy? --lazy detaches a busy one)")
        }
    }
}
