import ArgumentParser
import Foundation
import Formats
import WebKnossos

/// DATASET LAYER MAG, the place `read`, `write` and `add-mag` work on.
struct MagLocation: ParsableArguments {
    @Argument(help: "The dataset directory.") var dataset: String
    @Argument(help: "The layer.") var layer: String
    @Argument(help: "The mag: 1, 2, 2-2-1 …") var mag: String
}

/// The region arguments of `read` and `write`.
struct RegionOptions: ParsableArguments {
    @Option(help: "First voxel X,Y,Z (in the mag's voxels, or mag-1 voxels with --mag1).") var offset: Triple?
    @Option(help: "Size X,Y,Z of the region in voxels.") var size: Triple?
    @Flag(help: "Offset and size are in mag-1 voxels (like the reference's absolute_offset).") var mag1 = false

    /// The region in the mag's own voxels.
    func box(in mag: Mag) throws -> Box? {
        guard let offset, let size else { return nil }
        guard size.value.x >= 0, size.value.y >= 0, size.value.z >= 0 else {
            throw CLIError("--size \(size.value): sizes must not be negative")
        }
        guard offset.value.x >= 0, offset.value.y >= 0, offset.value.z >= 0 else {
            throw CLIError("--offset \(offset.value): WKW has no voxels at negative coordinates")
        }
        let limit = Int(Int32.max)
        for (name, v) in [("--offset", offset.value), ("--size", size.value)] where v.x > limit || v.y > limit || v.z > limit {
            throw CLIError("\(name) \(v): coordinates above \(limit) are out of range")
        }
        guard mag1 else { return Box(offset: offset.value, size: size.value) }
        let f = mag.factors
        for (name, v) in [("--offset", offset.value), ("--size", size.value)]
        where v.x % f.x != 0 || v.y % f.y != 0 || v.z % f.z != 0 {
            throw CLIError("\(name) \(v) (mag-1 voxels) is not a multiple of mag \(mag)")
        }
        return Box(offset: offset.value.floorDiv(f), size: size.value.floorDiv(f))
    }

    func validate() throws {
        if (offset == nil) != (size == nil) { throw ValidationError("--offset and --size go together") }
    }
}

struct WriteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write",
        abstract: "Write raw voxels (C-order z, y, x, channel) into a mag; the bounding box grows to cover them.",
        discussion: """
            Example: python3 -c "import numpy as np, sys; sys.stdout.buffer.write(np.zeros((32, 512, 512, 3), np.uint8).tobytes())" \\
              | wkfs write my_dataset color 1 --offset 10,20,30 --size 512,512,32
            """)

    @OptionGroup var location: MagLocation
    @OptionGroup var region: RegionOptions
    @Option(help: "Read the voxels from this file instead of stdin.") var input: String?

    func validate() throws {
        if region.offset == nil { throw ValidationError("write needs --offset and --size") }
    }

    func run() throws {
        var ds = try Dataset.open(location.dataset)
        let view = try ds.mag(location.layer, location.mag)
        let box = try region.box(in: view.mag)!
        let store = view.store
        let what = "region \(box) of \(store.channels)×\(store.voxelType)"
        guard let byteCount = box.byteCount(voxelSize: store.voxelBytes) else { throw CLIError("--size \(box.size): the region is too large") }
        var source = try RawInput(path: input, expected: byteCount, what: what)
        guard let writable = store as? any BlockWritableStore, writable.streamsLayers else {
            // Formats that rewrite a file per write: slabs of whole files (shards) in z, each
            // written as one region.
            let slabs = try fileSlabs(box, fileEdge: store.fileShape.z, voxelSize: store.voxelBytes)
            let largest = slabs.map { $0.byteCount(voxelSize: store.voxelBytes)! }.max() ?? 0
            let buffer = LargeBuffer.allocate(byteCount: largest)
            defer { buffer.deallocate() }
            for slab in slabs {
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<slab.byteCount(voxelSize: store.voxelBytes)!])
                try source.next(into: part)
                try view.write(slab, from: UnsafeRawBufferPointer(part))
            }
            try ds.growBoundingBox(location.layer, toCover: view.mag.toMag1(box))
            return
        }
        let layerBytes = Box(offset: box.offset, size: Vec3(box.size.x, box.size.y, store.blockShape.z)).byteCount(voxelSize: store.voxelBytes)
        guard let layerBytes, layerBytes <= 2 << 30 else {
            throw CLIError("--size \(box.size): one layer of blocks of the region would need more than 2048 MiB of memory; write it in parts")
        }
        // The mag asks for the region slab by slab; one buffer serves them all (fresh memory
        // costs a page fault per page).
        var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        defer { buffer.deallocate() }
        try writable.writeRegion(box) { part in
            let count = part.voxelCount * store.voxelBytes
            if buffer.count < count {
                buffer.deallocate()
                buffer = LargeBuffer.allocate(byteCount: count)
            }
            let slab = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
            try source.next(into: slab)
            return UnsafeRawPointer(slab.baseAddress!)
        }
        try ds.growBoundingBox(location.layer, toCover: view.mag.toMag1(box))
    }
}

struct ReadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Read raw voxels (C-order z, y, x, channel) from a mag.",
        discussion: """
            Without --offset and --size, reads the layer's bounding box snapped outward to the mag's grid.
            Example: wkfs read my_dataset color 2 --offset 5,10,15 --size 256,256,16 | od -An -tu1 | head
            """)

    @OptionGroup var location: MagLocation
    @OptionGroup var region: RegionOptions
    @Option(help: "Write the voxels to this file instead of stdout.") var output: String?

    func run() throws {
        let ds = try Dataset.open(location.dataset)
        let view = try ds.mag(location.layer, location.mag)
        let box = try region.box(in: view.mag) ?? view.defaultBox
        if box.offset.x < 0 || box.offset.y < 0 || box.offset.z < 0, !box.isEmpty {
            throw CLIError("layer '\(location.layer)': bounding box \(box) starts at negative coordinates; give --offset and --size")
        }
        let sink = try RawOutput(path: output)
        do {
            // Block-aligned slabs of about 64 MiB: each block is decoded once, memory stays bounded,
            // and several block layers per slab keep the reads long (a layer is spread over the file).
            let store = view.store
            let voxelSize = store.voxelBytes
            let plane = Box(offset: box.offset, size: Vec3(box.size.x, box.size.y, 1))
            let planeBytes = max(1, plane.byteCount(voxelSize: voxelSize) ?? Int.max)
            let layers = max(1, (64 << 20) / planeBytes / store.blockShape.z)
            let edge = min(store.fileShape.z, store.blockShape.z * layers)
            let slabs = try fileSlabs(box, fileEdge: edge, voxelSize: voxelSize)
            // One buffer for every slab: fresh memory costs a page fault per page.
            let largest = slabs.map { $0.byteCount(voxelSize: voxelSize)! }.max() ?? 0
            let buffer = LargeBuffer.allocate(byteCount: largest)
            defer { buffer.deallocate() }
            // The next slab's stored bytes are asked for on another thread: the advice itself
            // takes time (a call per run of blocks) that the decoding should not wait for.
            let advice = DispatchQueue(label: "wkfs.read-ahead", qos: .utility)
            defer { advice.sync {} }
            let ahead = 2
            for slab in slabs.prefix(ahead) { advice.async { try? view.prefetch(slab) } }
            for (i, slab) in slabs.enumerated() {
                if i + ahead < slabs.count {
                    let next = slabs[i + ahead]
                    advice.async { try? view.prefetch(next) }
                }
                let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<slab.byteCount(voxelSize: voxelSize)!])
                try view.read(slab, into: part)
                try sink.write(UnsafeRawBufferPointer(part))
            }
        } catch {
            sink.abandon()
            throw error
        }
        try sink.finish()
    }
}

struct CopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy a dataset with a new format, block length, file length and compression.",
        discussion: """
            Without options each mag keeps its layout. --data-format converts every layer (wkw <-> zarr3).
            Examples: wkfs copy my_dataset copy_of_dataset --block-len 8 --file-len 8 --compress
                      wkfs copy my_dataset as_zarr --data-format zarr3 --chunk-shape 32 --shard-shape 1024 --compress
            """)

    @Argument(help: "The source dataset.") var source: String
    @Argument(help: "The new dataset directory (missing or empty).") var destination: String
    @OptionGroup var storage: StorageOptions
    @Option(name: .customLong("data-format"), help: "wkw or zarr3: the copy's format (default: each layer's own).")
    var dataFormat: DataFormatArgument?
    @OptionGroup var sharding: ShardOptions

    func run() throws {
        let ds = try Dataset.open(source)
        let shard = try sharding.resolved()
        var progress = Progress(shard.isWhole ? "copy" : "copy (part \(shard))")
        try ds.copy(
            to: destination,
            options: .init(
                blockLength: storage.block ?? (storage.shardShape != nil ? 32 : nil),
                fileLength: storage.fileBlocks(block: storage.block ?? 32), compress: storage.compress, format: dataFormat?.value),
            shard: shard
        ) { progress.update($0, $1) }
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify every header, jump table and block of a dataset; list every problem (exit 1 if any).",
        discussion: """
            Also lists what killed writers left: undo journals of interrupted in-place writes, temporary files and
            unfinished copies. --repair rolls the interrupted writes back (every data file is its old content again)
            and removes the temporary files of writers that no longer run, then checks.
            Example: wkfs check my_dataset
            """)

    @Argument(help: "The dataset directory.") var dataset: String
    @Flag(help: "Roll back interrupted writes and remove stale temporary files first.") var repair = false

    func run() throws {
        let ds = try Dataset.open(dataset)
        var progress = Progress("check")
        let problems = ds.check(repair: repair, repaired: { print("repaired: \($0)") }) { progress.update($0, $1) }
        for problem in problems { print(problem) }
        if !problems.isEmpty {
            printError("wkfs check: \(problems.count) problem(s) in \(ds.path)")
            throw ExitCode(1)
        }
        print("\(ds.path): ok")
    }
}
