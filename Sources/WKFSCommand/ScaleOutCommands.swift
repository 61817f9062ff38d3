import ArgumentParser
import Foundation
import WebKnossos

/// A mag on the command line: `2` or `2-2-1`.
struct MagArgument: ExpressibleByArgument, Sendable {
    var mag: Mag
    init?(argument: String) {
        guard let mag = try? Mag(parsing: argument) else { return nil }
        self.mag = mag
    }
}

/// `anisotropic`, `isotropic` or `constant-z`.
typealias SamplingModeArgument = NamedArgument<SamplingMode>
/// `mode`, `median`, `nearest`, `max`, `min` or `mean`.
typealias InterpolationArgument = NamedArgument<Interpolation>

struct DownsampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "downsample",
        abstract: "Build the coarser mags of a layer, as webknossos downsample does (same mags, names and voxels).",
        discussion: """
            Each level is computed from the one before, file by file of the new mag, in the layer's format with the \
            source mag's block and file lengths and compression. Running it again finishes an interrupted run.
            With --shard I/N (or in a SLURM job array) a run builds one level, its I-th part: run the parts of a level, \
            then those of the next (--print-slurm prints a script that submits one job array per level, each after the one before).
            Examples: wkfs downsample my_dataset color
                      wkfs downsample my_dataset segmentation --coarsest 16 --sampling-mode isotropic
                      wkfs downsample my_dataset color --print-slurm --tasks 16 | bash
            """)

    @Argument(help: "The dataset directory.") var dataset: String
    @Argument(help: "The layer to downsample.") var layer: String
    @Option(help: "The mag to start from (default: the layer's coarsest).") var from: MagArgument?
    @Option(help: "The coarsest mag to build (default: as webknossos, from the bounding box).") var coarsest: MagArgument?
    @Option(help: "anisotropic (from the voxel size; default), isotropic or constant-z.") var samplingMode: SamplingModeArgument?
    @Option(help: "mode, median, nearest, max, min or mean (default: mode for segmentation, median for color).")
    var interpolation: InterpolationArgument?
    @OptionGroup var sharding: ShardOptions
    @Flag(help: "Print a bash script that submits the levels as SLURM job arrays (sbatch) instead of running them.")
    var printSlurm = false
    @Option(help: "With --print-slurm: tasks per job array.") var tasks = 4

    func run() throws {
        var ds = try Dataset.open(dataset)
        var options = Dataset.DownsampleOptions()
        options.from = from?.mag
        options.coarsest = coarsest?.mag
        options.samplingMode = samplingMode?.value ?? .anisotropic
        options.interpolation = interpolation?.value
        if printSlurm {
            print(try slurmScript(ds, options))
            return
        }
        options.shard = try sharding.resolved()
        options.firstLevelOnly = !options.shard.isWhole
        if !options.shard.isWhole && from == nil {
            throw ValidationError("a part (--shard \(options.shard), or a SLURM array task) needs --from: every part must build the same level")
        }
        var progress: Progress?
        var current: Mag?
        try ds.downsample(layer, options: options) { step, done, total in
            if current != step.target {
                current = step.target
                let part = options.shard.isWhole ? "" : " (part \(options.shard))"
                progress = Progress("downsample \(layer) \(step.source) -> \(step.target)\(part)")
            }
            progress?.update(done, total)
        }
    }

    /// One `sbatch --array` per level, each level's array after the one before succeeded.
    func slurmScript(_ ds: Dataset, _ options: Dataset.DownsampleOptions) throws -> String {
        guard tasks >= 1 else { throw ValidationError("--tasks must be at least 1") }
        let (steps, interpolation) = try ds.downsamplePlan(layer, options)
        let executable = Self.quote(Self.executablePath())
        var lines = [
            "#!/bin/bash",
            "# Downsamples layer \(layer) of \(ds.path): \(steps.count) level(s), one SLURM job array of \(tasks) tasks each;",
            "# a level starts when every task of the one before succeeded (sbatch --dependency=afterok).",
            "# Extra sbatch options (partition, time, memory): SBATCH_OPTIONS=\"--partition=... --mem=...\"",
            "set -euo pipefail",
            "previous=\"\"",
        ]
        guard let last = steps.last else {
            lines.append("echo 'nothing to do: the layer already has its coarsest mag' >&2")
            return lines.joined(separator: "\n")
        }
        for step in steps {
            let command = [
                executable, "downsample", Self.quote(Self.absolute(ds.path)), Self.quote(layer), "--from", step.source.shortName,
                "--coarsest", last.target.shortName, "--sampling-mode", (samplingMode?.value ?? .anisotropic).rawValue, "--interpolation", interpolation.rawValue,
            ].joined(separator: " ")
            lines.append(
                "previous=$(sbatch --parsable ${SBATCH_OPTIONS:-} --job-name=wkfs-downsample-\(step.target.shortName) --array=0-\(tasks - 1) "
                    + "${previous:+--dependency=afterok:$previous} --output=wkfs-downsample-\(step.target.shortName)-%A_%a.log --wrap \(Self.quote(command)))")
            lines.append("echo \"mag \(step.target.shortName): job $previous\"")
        }
        return lines.joined(separator: "\n")
    }

    /// Jobs start in another directory: paths in the script are absolute.
    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    static func quote(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    static func executablePath() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

struct CompressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Rewrite uncompressed mags compressed (LZ4HC for WKW, zstd for Zarr3), voxels unchanged.",
        discussion: """
            Each mag is rebuilt compressed beside itself, data file by data file, then swapped in at once: readers \
            see the old mag or the new one. Running it again after a kill goes on where it stopped. Nothing may write \
            the mag meanwhile. With --shard I/N (or in a SLURM job array) a run does its part of each mag; the part \
            that finishes last swaps the mag in.
            Examples: wkfs compress my_dataset
                      wkfs compress my_dataset color --mag 1
            """)

    @Argument(help: "The dataset directory.") var dataset: String
    @Argument(help: "The layer (default: every layer).") var layer: String?
    @Option(name: .customLong("mag"), help: "A mag to compress (repeatable; default: every mag).") var mags: [MagArgument] = []
    @OptionGroup var sharding: ShardOptions

    func run() throws {
        var ds = try Dataset.open(dataset)
        let shard = try sharding.resolved()
        var progress: Progress?
        var current = ""
        let part = shard.isWhole ? "" : " (part \(shard))"
        let results = try ds.compress(layer: layer, mags: mags.isEmpty ? nil : mags.map(\.mag), shard: shard) { layer, mag, done, total in
            if current != "\(layer)/\(mag)" {
                current = "\(layer)/\(mag)"
                progress = Progress("compress \(layer)/\(mag)\(part)")
            }
            progress?.update(done, total)
        }
        for (layer, mag, outcome) in results {
            switch outcome {
            case .compressed: printError("\(layer)/\(mag): compressed")
            case .alreadyCompressed: printError("\(layer)/\(mag): already compressed")
            case .partDone: printError("\(layer)/\(mag): part \(shard) done; the last part to finish swaps the mag in")
            case .foreign: printError("\(layer)/\(mag): a mag of another dataset, left alone")
            }
        }
    }
}
