import Foundation
import WKW

#if canImport(Glibc)
    import Glibc
#endif

/// Where raw voxel bytes for `write` come from: a file (size checked before anything is written)
/// or stdin (read to the end first, so a short stream never leaves a half-done write).
struct RawInput {
    private let name: String
    private let handle: FileHandle
    private var buffered: Data?
    private var position = 0

    /// Opens the input and checks that it holds exactly `expected` bytes.
    init(path: String?, expected: Int, what: String) throws {
        if let path, Self.isRegularFile(path) {
            name = "--input \(path)"
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw CLIError("\(name): cannot open for reading")
            }
            self.handle = handle
            let size = try handle.seekToEnd()
            try handle.seek(toOffset: 0)
            guard size == UInt64(expected) else {
                throw CLIError("\(name): holds \(size) bytes, but \(what) needs exactly \(expected)")
            }
        } else {
            // stdin, a pipe or a FIFO: read to the end first, so a short stream changes nothing.
            name = path.map { "--input \($0)" } ?? "stdin"
            if let path {
                guard let opened = FileHandle(forReadingAtPath: path) else { throw CLIError("\(name): cannot open for reading") }
                handle = opened
            } else {
                handle = .standardInput
            }
            let data = try handle.readToEnd() ?? Data()
            guard data.count == expected else {
                throw CLIError("\(name): gave \(data.count) bytes, but \(what) needs exactly \(expected)")
            }
            buffered = data
        }
    }

    static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// The next `count` bytes.
    mutating func next(_ count: Int) throws -> Data {
        if let buffered {
            defer { position += count }
            return buffered.subdata(in: position..<(position + count))
        }
        guard let data = try handle.read(upToCount: count), data.count == count else {
            throw CLIError("\(name): ended early")
        }
        return data
    }
}

/// Where raw voxel bytes from `read` go: stdout; a device, FIFO or socket, written in place
/// (`--output /dev/null` must never be replaced by a regular file); or a regular file that appears
/// only when complete (through a symlink, the link's target is replaced and the link kept).
struct RawOutput {
    private let descriptor: Int32
    private let finalPath: String?
    private let temporaryPath: String?
    private let label: String

    init(path: String?) throws {
        guard let path else {
            descriptor = STDOUT_FILENO
            finalPath = nil
            temporaryPath = nil
            label = "stdout"
            return
        }
        label = "--output \(path)"
        var info = stat()
        if stat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFREG {
            guard (info.st_mode & S_IFMT) != S_IFDIR else { throw CLIError("\(label): is a directory") }
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw CLIError("\(label): cannot open for writing: \(String(cString: strerror(errno)))") }
            descriptor = fd
            finalPath = nil
            temporaryPath = nil
            return
        }
        let target = Self.resolvedLink(path)
        let temporary = "\(target).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CLIError("\(label): cannot create: \(String(cString: strerror(errno)))") }
        descriptor = fd
        finalPath = target
        temporaryPath = temporary
    }

    /// The regular file a symlink chain ends at (the path itself when it is no link or dangles).
    private static func resolvedLink(_ path: String) -> String {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK, stat(path, &info) == 0,
            let resolved = realpath(path, nil)
        else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    func write(_ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(descriptor, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw CLIError("\(label): cannot write: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Puts a complete output file in place.
    func finish() throws {
        guard let finalPath, let temporaryPath else {
            if descriptor != STDOUT_FILENO { close(descriptor) }
            return
        }
        close(descriptor)
        guard rename(temporaryPath, finalPath) == 0 else {
            throw CLIError("\(label): cannot rename into place: \(String(cString: strerror(errno)))")
        }
    }

    /// Removes an incomplete output file.
    func abandon() {
        guard let temporaryPath else {
            if descriptor != STDOUT_FILENO { close(descriptor) }
            return
        }
        close(descriptor)
        unlink(temporaryPath)
    }
}

/// An error of the command line itself, with its message.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Splits a region into slabs along z at multiples of `edge`, each at most `slabBudget` bytes when
/// the region allows. Writes use the file edge (each compressed file is rewritten once; a layer of
/// files over the budget is split further); reads use the block edge (each block decoded once).
func fileSlabs(_ box: Box, fileEdge: Int, voxelSize: Int, slabBudget: Int = 2 << 30) throws -> [Box] {
    guard !box.isEmpty else { return [] }
    guard let planeBytes = Box(offset: box.offset, size: Vec3(box.size.x, box.size.y, 1)).byteCount(voxelSize: voxelSize),
        planeBytes <= slabBudget
    else {
        throw CLIError("--size \(box.size): one z-plane of the region would need more than \(slabBudget >> 20) MiB of memory")
    }
    let fitting = slabBudget / planeBytes
    let thickness = fitting >= fileEdge ? fileEdge : max(1, fitting)
    var slabs: [Box] = []
    var z = box.offset.z
    while z < box.end.z {
        let next = min(box.end.z, (z / fileEdge + 1) * fileEdge, z + thickness)
        slabs.append(Box(offset: Vec3(box.offset.x, box.offset.y, z), size: Vec3(box.size.x, box.size.y, next - z)))
        z = next
    }
    return slabs
}
