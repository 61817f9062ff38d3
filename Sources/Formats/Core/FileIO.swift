#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
import SystemPackage
import CLinux

/// An open file for positioned reads and writes; every failure names the path.
/// Wraps swift-system's `FileDescriptor` and adds the few calls it lacks (fstat, fsync).
/// Positioned I/O needs no shared offset, so one open file may serve many threads.
final class OpenFile: Sendable {
    let path: String
    let descriptor: FileDescriptor

    private init(path: String, descriptor: FileDescriptor) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Opens an existing regular file; nil when it does not exist.
    /// - Throws: `FormatError` when it cannot be opened or is not a regular file: a FIFO or device
    ///   in a data file's place is opened without waiting (`O_NONBLOCK`) and refused, never read.
    static func openIfExists(_ path: String, writable: Bool = false) throws -> OpenFile? {
        do {
            let fd = try FileDescriptor.open(FilePath(path), writable ? .readWrite : .readOnly, options: [.closeOnExec, .nonBlocking])
            let file = OpenFile(path: path, descriptor: fd)
            var info = stat()
            guard fstat(fd.rawValue, &info) == 0 else { throw file.error("cannot stat") }
            guard (info.st_mode & S_IFMT) == S_IFREG else {
                throw FormatError(.corrupt, path: path, (info.st_mode & S_IFMT) == S_IFDIR ? "is a directory, not a file" : "is not a regular file")
            }
            return file
        } catch Errno.noSuchFileOrDirectory {
            if let broken = PathOps.danglingLink(on: path) { throw broken }
            return nil
        } catch let errno as Errno {
            throw FormatError(.io(errno: errno.rawValue), path: path, "cannot open: \(errno)")
        }
    }

    /// Creates a new file, failing if it exists. With `like`, the file it will replace: the new
    /// one gets that file's mode, owner and group, or, when there is none yet, its directory's
    /// owner and group and mode (without execute bits), not the process's umask.
    static func createNew(_ path: String, like final: String? = nil) throws -> OpenFile {
        let file: OpenFile
        do {
            let fd = try FileDescriptor.open(
                FilePath(path), .readWrite, options: [.create, .exclusiveCreate, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
            file = OpenFile(path: path, descriptor: fd)
        } catch let errno as Errno {
            throw FormatError(.io(errno: errno.rawValue), path: path, "cannot create: \(errno)")
        }
        if let final { PathOps.copyOwnership(to: file.descriptor.rawValue, like: final) }
        return file
    }

    /// A second descriptor of this file whose writes go to the disk directly, past the page
    /// cache (`O_DIRECT`); nil where the file system or platform has none. Its writes must be
    /// whole pages at page-aligned offsets, from page-aligned memory.
    func directWriter() -> OpenFile? {
        guard let openDirect else { return nil }
        guard let fd = try? FileDescriptor.open(FilePath(path), .writeOnly, options: [.closeOnExec, .init(rawValue: openDirect)]) else {
            return nil
        }
        return OpenFile(path: path, descriptor: fd)
    }

    deinit { try? descriptor.close() }

    /// Inode, size and modification time of the open file. The corresponding C function is `fstat`.
    func identity() throws -> [Int64] {
        var info = stat()
        guard fstat(descriptor.rawValue, &info) == 0 else { throw error("cannot stat") }
        return [Int64(bitPattern: UInt64(info.st_ino)), Int64(info.st_size), Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec)]
    }

    /// Whether `range` lies entirely in a hole of a sparse file (reads as zeros, nothing stored).
    /// False when the file system cannot tell. The corresponding C function is `lseek` with
    /// `SEEK_DATA`.
    func isHole(_ range: Range<Int>) -> Bool {
        #if canImport(Glibc)
            let seekData: Int32 = 3  // SEEK_DATA on Linux; Swift's Glibc module leaves it out
            let next = lseek(descriptor.rawValue, off_t(range.lowerBound), seekData)
            if next < 0 { return errno == ENXIO }  // no data from here to the end
            return Int(next) >= range.upperBound
        #else
            return false
        #endif
    }

    /// Turns `range` into a hole (reads as zeros, frees its space); false where the file system
    /// cannot. The corresponding C function is `fallocate` with `FALLOC_FL_PUNCH_HOLE`.
    func punchHole(_ range: Range<Int>) -> Bool {
        #if os(Linux)
            let punchHoleKeepSize: CInt = 0x02 | 0x01  // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
            return linuxFallocate(descriptor.rawValue, punchHoleKeepSize, Int64(range.lowerBound), Int64(range.count)) == 0
        #else
            return false
        #endif
    }

    /// The file's size in bytes. The corresponding C function is `fstat`.
    func size() throws -> Int {
        var info = stat()
        guard fstat(descriptor.rawValue, &info) == 0 else { throw error("cannot stat") }
        return Int(info.st_size)
    }

    /// Reads exactly `buffer.count` bytes at `offset`; a short read is corrupt data.
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n: Int
            do {
                n = try descriptor.read(
                    fromAbsoluteOffset: Int64(offset + done), into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]),
                    retryOnInterrupt: true)
            } catch let errno as Errno {
                throw FormatError(.io(errno: errno.rawValue), path: path, "cannot read at offset \(offset + done): \(errno)")
            }
            guard n > 0 else {
                throw FormatError(.corrupt, path: path, "file ends at offset \(offset + done), expected \(buffer.count) bytes at offset \(offset)")
            }
            done += n
        }
    }

    /// Tells the kernel these bytes will be read soon, so it starts fetching them (advice only;
    /// errors are ignored). The corresponding C function is `posix_fadvise`.
    func willNeed(_ range: Range<Int>) {
        #if canImport(Glibc)
            _ = posix_fadvise(descriptor.rawValue, off_t(range.lowerBound), off_t(range.count), POSIX_FADV_WILLNEED)
        #endif
    }

    /// Reads exactly `count` bytes at `offset`.
    func read(at offset: Int, count: Int) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(at: offset, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// Writes all of `bytes` at `offset`.
    func write(at offset: Int, _ bytes: UnsafeRawBufferPointer) throws {
        do {
            _ = try descriptor.writeAll(toAbsoluteOffset: Int64(offset), bytes)
        } catch let errno as Errno {
            throw FormatError(.io(errno: errno.rawValue), path: path, "cannot write at offset \(offset): \(errno)")
        }
    }

    /// Sets the file's length (sparse when growing). The corresponding C function is `ftruncate`.
    func resize(to length: Int) throws {
        do {
            try descriptor.resize(to: Int64(length), retryOnInterrupt: true)
        } catch let errno as Errno {
            throw FormatError(.io(errno: errno.rawValue), path: path, "cannot set length to \(length): \(errno)")
        }
    }

    /// Starts writing the file's dirty pages to disk without waiting (advice only: errors are
    /// ignored; `sync()` still makes the file durable). Linux's `posix_fadvise` with
    /// `POSIX_FADV_DONTNEED` starts that writeback (Swift's Glibc module lacks `sync_file_range`).
    func startWriteback() {
        #if canImport(Glibc)
            _ = posix_fadvise(descriptor.rawValue, 0, 0, POSIX_FADV_DONTNEED)
        #endif
    }

    /// Flushes the file to stable storage. The corresponding C function is `fsync`.
    func sync() throws {
        guard fsync(descriptor.rawValue) == 0 else { throw error("cannot fsync") }
    }

    fileprivate func error(_ what: String) -> FormatError {
        let code = errno
        return FormatError(.io(errno: code), path: path, "\(what): \(Errno(rawValue: code))")
    }
}

#if os(Linux)
    /// glibc's `fallocate64`, which Swift's Glibc module leaves out (a GNU extension).
    @_silgen_name("fallocate64")
    private func linuxFallocate(_ fd: CInt, _ mode: CInt, _ offset: Int64, _ length: Int64) -> CInt
#endif

/// `O_DIRECT`, which Swift's Glibc module leaves out (a GNU extension); its value differs by
/// architecture.
#if os(Linux) && (arch(x86_64) || arch(i386))
    private let openDirect: CInt? = 0o40000
#elseif os(Linux) && arch(arm64)
    private let openDirect: CInt? = 0o200000
#else
    private let openDirect: CInt? = nil
#endif

/// File-system calls on paths that swift-system does not offer.
public enum PathOps {
    /// Atomically replaces `destination` with `source`. The corresponding C function is `rename`.
    public static func rename(_ source: String, to destination: String) throws {
        guard Glibc.rename(source, destination) == 0 else {
            let code = errno
            throw FormatError(.io(errno: code), path: destination, "cannot rename \(source) over it: \(Errno(rawValue: code))")
        }
    }

    /// Flushes a directory entry change (a rename or a new file) to stable storage.
    /// - Throws: `FormatError` when the directory cannot be opened or synced.
    public static func syncDirectoryOrThrow(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            throw FormatError(.io(errno: code), path: path, "cannot open the directory to sync it: \(Errno(rawValue: code))")
        }
        defer { close(fd) }
        guard fsync(fd) == 0 else {
            let code = errno
            throw FormatError(.io(errno: code), path: path, "cannot fsync the directory: \(Errno(rawValue: code))")
        }
    }

    /// Removes a file, ignoring a missing one.
    public static func remove(_ path: String) {
        _ = unlink(path)
    }

    /// True when something (file, directory or link, even dangling) exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// True when `path` is a directory (following links).
    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates a directory and its missing parents. Inside a dataset (`inherit`), each gets its
    /// parent's mode, owner and group; a dataset's own directory gets the process's defaults
    /// (its parent may be /tmp).
    public static func makeDirectories(_ path: String, inherit: Bool = true) throws {
        if isDirectory(path) { return }
        let parent = dirname(path)
        if parent != path, !parent.isEmpty { try makeDirectories(parent, inherit: inherit) }
        if mkdir(path, 0o755) != 0 {
            if errno == EEXIST { return }
            let code = errno
            throw FormatError(.io(errno: code), path: path, "cannot create directory: \(Errno(rawValue: code))")
        }
        if inherit { inheritOwnership(path) }
    }

    /// Gives a directory just made its parent's mode, owner and group (best effort: a user who
    /// may not give a file away keeps it).
    static func inheritOwnership(_ path: String) {
        var parent = stat()
        guard stat(dirname(path), &parent) == 0 else { return }
        _ = chown(path, parent.st_uid, parent.st_gid)
        _ = chmod(path, parent.st_mode & 0o2777)  // not the sticky bit
    }

    /// Gives the open file `fd` the mode, owner and group of `like` (the file it will replace),
    /// or when that does not exist, of its directory without execute bits. Best effort.
    static func copyOwnership(to fd: CInt, like: String) {
        var info = stat()
        if stat(like, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG {
            _ = fchown(fd, info.st_uid, info.st_gid)
            _ = fchmod(fd, info.st_mode & 0o7777)
        } else if stat(dirname(like), &info) == 0 {
            _ = fchown(fd, info.st_uid, info.st_gid)
            _ = fchmod(fd, info.st_mode & 0o666)
        }
    }

    /// The names in a directory, without `.` and `..`; empty when it cannot be read.
    public static func list(_ path: String) -> [String] {
        (try? listOrThrow(path)) ?? []
    }

    /// The names in a directory that may have been removed meanwhile (a concurrent delete):
    /// none when it is not there.
    /// - Throws: `FormatError` when it is there but cannot be opened.
    public static func listIfPresent(_ path: String) throws -> [String] {
        do {
            return try listOrThrow(path)
        } catch let error as FormatError where error.kind == .notFound {
            return []
        }
    }

    /// The names in a directory, without `.` and `..`.
    /// - Throws: `FormatError` when the directory cannot be opened (a missing one included).
    public static func listOrThrow(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            let code = errno
            throw FormatError(code == ENOENT ? .notFound : .io(errno: code), path: path, "cannot list the directory: \(Errno(rawValue: code))")
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Why `path`, which does not resolve (ENOENT), is broken rather than missing: the symbolic
    /// link on its way that points at nothing (a file or directory linked to a disk that is not
    /// mounted). nil when the path simply does not exist.
    static func danglingLink(on path: String) -> FormatError? {
        var child = path
        while true {
            let parent = dirname(child)
            var info = stat()
            if parent == child { return nil }
            if stat(parent, &info) == 0 {
                // The deepest part that exists: is the next one a link to nothing?
                guard lstat(child, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK else { return nil }
                return FormatError(.corrupt, path: child, "is a symbolic link to nothing (\(linkTarget(child) ?? "?"))")
            }
            child = parent
        }
    }

    private static func linkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let count = readlink(path, &buffer, 4096)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// What `stat` says about a path, in the units the mount needs.
public struct FileStatus: Sendable {
    public var size: Int
    /// Bytes allocated on disk.
    public var allocated: Int
    public var modificationSeconds: Int64
    public var modificationNanoseconds: Int
    public var isDirectory: Bool
    public var isSymbolicLink: Bool
    public var isRegularFile: Bool
    public var inode: UInt64

    /// Changes whenever the file is replaced or modified: inode, size and modification time.
    public var identity: [Int64] {
        [Int64(bitPattern: inode), Int64(size), modificationSeconds, Int64(modificationNanoseconds)]
    }

    /// Stats `path`; nil only when nothing is there (ENOENT).
    /// - Throws: `FormatError` for any other failure: `.corrupt` for a path component that is
    ///   not a directory or a symbolic link loop, `.io` otherwise (no permission, ...).
    public static func ofExisting(_ path: String, followLinks: Bool = false) throws -> FileStatus? {
        var info = stat()
        guard (followLinks ? stat(path, &info) : lstat(path, &info)) != 0 else { return FileStatus(info) }
        let code = errno
        if code == ENOENT {
            if let broken = PathOps.danglingLink(on: path) { throw broken }
            return nil
        }
        // A path that cannot lead to a file (a file where a directory belongs, a link loop) is
        // a broken tree, not a missing file.
        let kind: FormatError.Kind = code == ENOTDIR || code == ELOOP ? .corrupt : .io(errno: code)
        throw FormatError(kind, path: path, "cannot stat: \(String(cString: strerror(code)))")
    }

    /// Whether a directory is at `path` (following links); false when nothing is there.
    /// - Throws: `FormatError` (`.corrupt`) when something else is there, or as `ofExisting`.
    public static func isDirectoryThere(_ path: String) throws -> Bool {
        guard let status = try ofExisting(path, followLinks: true) else { return false }
        guard status.isDirectory else { throw FormatError(.corrupt, path: path, "is not a directory") }
        return true
    }

    /// Stats `path` without following a final symbolic link; nil when nothing is there.
    public static func of(_ path: String, followLinks: Bool = false) -> FileStatus? {
        var info = stat()
        let result = followLinks ? stat(path, &info) : lstat(path, &info)
        guard result == 0 else { return nil }
        return FileStatus(info)
    }
}

extension FileStatus {
    fileprivate init(_ info: stat) {
        self.init(
            size: Int(info.st_size), allocated: Int(info.st_blocks) * 512,
            modificationSeconds: Int64(info.st_mtim.tv_sec), modificationNanoseconds: Int(info.st_mtim.tv_nsec),
            isDirectory: (info.st_mode & S_IFMT) == S_IFDIR, isSymbolicLink: (info.st_mode & S_IFMT) == S_IFLNK,
            isRegularFile: (info.st_mode & S_IFMT) == S_IFREG, inode: UInt64(info.st_ino))
    }
}

extension PathOps {
    /// Removes an empty directory. The corresponding C function is `rmdir`.
    public static func removeDirectory(_ path: String) throws {
        guard Glibc.rmdir(path) == 0 else {
            let code = errno
            throw FormatError(.io(errno: code), path: path, "cannot remove directory: \(Errno(rawValue: code))")
        }
    }

    /// Creates one directory, with its parent's mode, owner and group. The corresponding C
    /// function is `mkdir`.
    public static func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 else {
            let code = errno
            throw FormatError(.io(errno: code), path: path, "cannot create directory: \(Errno(rawValue: code))")
        }
        inheritOwnership(path)
    }

    /// Space on the file system holding `path`. The corresponding C function is `statvfs`.
    public static func fileSystemSpace(_ path: String) -> (blockSize: UInt64, blocks: UInt64, free: UInt64, available: UInt64, files: UInt64, freeFiles: UInt64)? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return (UInt64(info.f_frsize), UInt64(info.f_blocks), UInt64(info.f_bfree), UInt64(info.f_bavail), UInt64(info.f_files), UInt64(info.f_ffree))
    }
}

extension PathOps {
    /// Swaps two paths (directories) in one atomic step. The corresponding C function is
    /// `renameat2` with `RENAME_EXCHANGE`.
    /// - Returns: false when the file system cannot swap atomically (NFS, some FUSE file
    ///   systems): nothing was changed, the caller moves them one after the other.
    /// - Throws: `FormatError` for other failures.
    public static func exchange(_ a: String, _ b: String) throws -> Bool {
        if wkfs_exchange_paths(a, b) == 0 { return true }
        let code = errno
        if code == EINVAL || code == ENOSYS || code == EOPNOTSUPP { return false }
        throw FormatError(.io(errno: code), path: a, "cannot swap it with \(b): \(Errno(rawValue: code))")
    }

}
