import Foundation
import Formats

#if canImport(Glibc)
    import Glibc
#endif

/// Where raw voxel bytes for `write` come from: a file (size checked before anything is written)
/// or stdin, a pipe or a FIFO (read to the end first, so a short stream never leaves a half-done
/// write). Reads are large `read` calls straight into the caller's buffer.
struct RawInput {
    private let name: String
    private let descriptor: Int32
    private var buffered: [UInt8]?
    private var position = 0

    /// Opens the input and checks that it holds exactly `expected` bytes.
    init(path: String?, expected: Int, what: String) throws {
        name = path.map { "--input \($0)" } ?? "stdin"
        if let path {
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw CLIError("\(name): cannot open for reading: \(String(cString: strerror(errno)))") }
        } else {
            descriptor = STDIN_FILENO
        }
        var info = stat()
        if fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG {
            guard info.st_size == expected else {
                throw CLIError("\(name): holds \(info.st_size) bytes, but \(what) needs exactly \(expected)")
            }
            return
        }
        // The expected size is known: one buffer one byte larger (to notice a longer stream),
        // filled by `read` calls straight into its tail.
        let capacity = expected + 1
        var got = 0
        let data = try [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            while got < capacity {
                let n = try Self.readSome(
                    descriptor, into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[got...]), name: name)
                if n == 0 { break }
                got += n
            }
            initialized = got
        }
        guard data.count == expected else {
            throw CLIError("\(name): gave \(data.count)\(data.count > expected ? " or more" : "") bytes, but \(what) needs exactly \(expected)")
        }
        buffered = data
    }

    /// Fills `buffer` with the next bytes of the input.
    mutating func next(into buffer: UnsafeMutableRawBufferPointer) throws {
        if let buffered {
            buffered.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[position..<(position + buffer.count)])) }
            position += buffer.count
            return
        }
        var done = 0
        while done < buffer.count {
            let n = try Self.readSome(descriptor, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), name: name)
            guard n > 0 else { throw CLIError("\(name): ended early") }
            done += n
        }
    }

    /// One `read` call (retried when interrupted); 0 at the end.
    private static func readSome(_ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, name: String) throws -> Int {
        while true {
            let n = read(descriptor, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno != EINTR { throw CLIError("\(name): cannot read: \(String(cString: strerror(errno)))") }
        }
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

    /// Where a symlink chain ends (the path itself when it is no link), even when the last link
    /// dangles: writing through a link replaces its target, never the link.
    private static func resolvedLink(_ path: String) -> String {
        var current = path
        for _ in 0..<40 {  // the kernel's limit on links followed
            var info = stat()
            guard lstat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK else { return current }
            var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current, &target, target.count - 1)
            guard n > 0 else { return current }
            let text = String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("/") {
                current = text
            } else {
                let slash = current.lastIndex(of: "/")
                current = slash.map { String(current[...$0]) + text } ?? text
            }
        }
        return current
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

    /// Puts a complete output file in place; on failure removes it (call `abandon` only before).
    func finish() throws {
        guard let finalPath, let temporaryPath else {
            if descriptor != STDOUT_FILENO { close(descriptor) }
            return
        }
        // On disk before it takes the name: a crash leaves the old file or the complete new one.
        guard fsync(descriptor) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            unlink(temporaryPath)
            throw CLIError("\(label): cannot write: \(reason)")
        }
        close(descriptor)
        guard rename(temporaryPath, finalPath) == 0 else {
            unlink(temporaryPath)
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

/// Splits a region into slabs along z at multiples of `edge` (for reads, a multiple of the block
/// length, so each block is decoded once), each at most `slabBudget` bytes when the region allows.
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
