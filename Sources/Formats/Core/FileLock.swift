#if canImport(Glibc)
    import Glibc
#endif
import SystemPackage

/// An advisory lock on byte ranges of one file, held until `unlock` or deinit.
///
/// Linux open-file-description locks (`F_OFD_SETLKW`): unlike classic POSIX record locks they
/// belong to one open of the file, so two threads of one process exclude each other like two
/// processes do, and closing another descriptor of the same file releases nothing. They are
/// byte-range `fcntl` locks, which NFS (NLM, v4) carries between machines.
/// Ranges may lie past the end of the file: a lock byte needs no data.
final class FileLock: @unchecked Sendable {
    let path: String
    private var descriptor: CInt

    /// Locks `ranges` (each `(start, length)`) of the file at `path` in this order, waiting for
    /// other holders (`wait`) or failing at once with nil when one is held elsewhere.
    /// An exclusive lock opens the file for writing, a shared one for reading.
    /// - Throws: `FormatError` when the file cannot be opened or the file system refuses locks.
    static func lock(_ path: String, ranges: [(start: Int, length: Int)], exclusive: Bool, wait: Bool = true) throws -> FileLock? {
        let fd = open(path, (exclusive ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            let code = errno
            throw FormatError(.io(errno: code), path: path, "cannot open to lock: \(Errno(rawValue: code))")
        }
        let lock = FileLock(path: path, descriptor: fd)
        for range in ranges {
            var request = flock()
            request.l_type = Int16(exclusive ? F_WRLCK : F_RDLCK)
            request.l_whence = Int16(SEEK_SET)
            request.l_start = off_t(range.start)
            request.l_len = off_t(range.length)
            request.l_pid = 0  // required for OFD locks
            while fcntl(fd, wait ? ofdSetLockWait : ofdSetLock, &request) != 0 {
                let code = errno
                if code == EINTR { continue }
                if !wait && (code == EAGAIN || code == EACCES) { return nil }
                throw FormatError(.io(errno: code), path: path, "cannot lock: \(Errno(rawValue: code))")
            }
        }
        return lock
    }

    private init(path: String, descriptor: CInt) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Releases every range (closing the descriptor releases OFD locks).
    func unlock() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { unlock() }
}

/// `F_OFD_SETLK` and `F_OFD_SETLKW`, which Swift's Glibc module leaves out (same on every Linux
/// architecture).
private let ofdSetLock: CInt = 37
private let ofdSetLockWait: CInt = 38

/// An exclusive lock of a directory, for state that is replaced as a whole (a dataset's
/// properties file). `flock` on the directory itself leaves nothing on disk; where the file
/// system cannot lock a directory (NFS carries only byte-range locks, on files opened for
/// writing), a lock file in it, created empty when missing, carries the lock instead.
/// Held until `unlock` or deinit.
public final class DirectoryLock: @unchecked Sendable {
    private var descriptor: CInt = -1
    private var fileLock: FileLock?

    /// Waits for the lock of `directory`; `fallbackName` names the lock file where needed.
    public init(_ directory: String, fallbackName: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            throw FormatError(.io(errno: code), path: directory, "cannot open the directory to lock it: \(Errno(rawValue: code))")
        }
        while flock(fd, LOCK_EX) != 0 {
            if errno == EINTR { continue }
            close(fd)
            let path = directory + "/" + fallbackName
            let file = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
            guard file >= 0 else {
                let code = errno
                throw FormatError(.io(errno: code), path: path, "cannot open or create the lock file: \(Errno(rawValue: code))")
            }
            close(file)
            fileLock = try FileLock.lock(path, ranges: [(0, 1)], exclusive: true)!
            return
        }
        descriptor = fd
    }

    /// Waits for the lock of the lock file at `path` (created empty when missing): a lock
    /// beside a directory's own, for a step that takes the directory's lock itself meanwhile.
    /// `shared`: held together with other shared holders, excluding exclusive ones.
    public init(lockFile path: String, shared: Bool = false) throws {
        let file = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard file >= 0 else {
            let code = errno
            throw FormatError(.io(errno: code), path: path, "cannot open or create the lock file: \(Errno(rawValue: code))")
        }
        close(file)
        fileLock = try FileLock.lock(path, ranges: [(0, 1)], exclusive: !shared)!
    }

    public func unlock() {
        fileLock?.unlock()
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    deinit { unlock() }
}
