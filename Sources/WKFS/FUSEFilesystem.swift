/// A filesystem served through FUSE's low-level, inode-based protocol.
///
/// `FUSESession` calls these methods from several libfuse worker threads at once, so conforming
/// types must be `Sendable` and keep shared state behind a lock. Each method answers one kernel
/// request: it returns the reply, or throws to fail the request. A thrown ``FUSEError`` fails it
/// with its errno; any other error with `EIO`, unless ``errorNumber(for:operation:)`` maps it.
///
/// Every method has a default except ``lookup(parent:name:)``, ``getattr(_:)`` and
/// ``readdir(_:handle:offset:)``: requests that change something fail with `EROFS`, so a
/// read-only filesystem implements just those three plus a `read`.
///
/// Names are the bytes of one path component, as UTF-8; a name that is not valid UTF-8 never
/// reaches the filesystem (`lookup` fails with `ENOENT`, the others with `EINVAL`).
public protocol FUSEFilesystem: Sendable {
    // MARK: Connection

    /// Called once when the kernel connects, before any other request.
    ///
    /// - Parameters:
    ///   - connection: Settings agreed with the kernel, with the FUSE edge's defaults; change
    ///     them here.
    ///   - notifier: Tells the kernel to drop cached data or names when files change behind its
    ///     back. Keep it; it stays usable for the session's lifetime.
    func initialize(connection: inout FUSEConnection, notifier: FUSENotifier)

    /// Called once when the session ends (unmount), after the last request.
    func destroy()

    /// Seconds the kernel may cache attributes from `getattr` and `setattr` and, by default,
    /// from entries. Default 1.
    var attributeTimeout: Double { get }

    /// Seconds the kernel may cache a name from `lookup` and the creating requests, unless the
    /// ``Entry`` says otherwise. Default 1.
    var entryTimeout: Double { get }

    /// Where the session counts the requests it serves, or nil (the default) not to count.
    var requestCounts: FUSERequestCounts? { get }

    /// The errno a thrown error fails its request with; also the place to log errors.
    ///
    /// The default returns the code of a ``FUSEError`` and `EIO` for anything else.
    /// The FUSE edge logs every request that fails with `EIO`.
    func errorNumber(for error: any Error, operation: FUSEOperation) -> Int32

    // MARK: Names

    /// Finds `name` in the directory `parent`. Throw `FUSEError.noEntry` when it does not exist.
    func lookup(parent: Inode, name: String) throws -> Entry

    /// The kernel dropped `lookups` references to `inode` (each returned ``Entry`` is one).
    /// When the count reaches zero the filesystem may forget the inode number. Default: nothing.
    func forget(_ inode: Inode, lookups: UInt64)

    func getattr(_ inode: Inode) throws -> Attributes

    /// Changes size (truncate), permissions, owner or times. `handle` is set for `ftruncate`
    /// and `futimens` on an open file. Default: `EROFS`.
    func setattr(_ inode: Inode, changes: AttributeChanges, handle: Handle?) throws -> Attributes

    /// The target of a symbolic link. Default: `EINVAL` (not a link).
    func readlink(_ inode: Inode) throws -> String

    /// Default: `EROFS`. `permissions` has the caller's umask applied.
    func mkdir(parent: Inode, name: String, permissions: UInt16) throws -> Entry

    /// Default: `EROFS`.
    func unlink(parent: Inode, name: String) throws

    /// Default: `EROFS`.
    func rmdir(parent: Inode, name: String) throws

    /// Creates the symbolic link `parent/name` pointing to `target`. Default: `EROFS`.
    func symlink(target: String, parent: Inode, name: String) throws -> Entry

    /// Default: `EROFS`.
    func rename(
        parent: Inode, name: String, newParent: Inode, newName: String, flags: RenameFlags
    ) throws

    /// A hard link. Default: `EPERM`, as filesystems without hard links answer.
    func link(_ inode: Inode, newParent: Inode, newName: String) throws -> Entry

    // MARK: Files

    /// Default: a writable open fails with `EROFS`; a read-only one gets ``Handle/none``.
    func open(_ inode: Inode, flags: OpenFlags) throws -> OpenResult

    /// Creates and opens the regular file `parent/name`. Default: `EROFS`.
    func create(
        parent: Inode, name: String, permissions: UInt16, flags: OpenFlags
    ) throws -> (entry: Entry, file: OpenResult)

    /// Reads up to `size` bytes at `offset`; fewer only at the end of the file.
    ///
    /// Implement this or ``read(_:handle:offset:into:)``, which the FUSE edge calls and which
    /// by default calls this one. Default: `ENOSYS`.
    func read(_ inode: Inode, handle: Handle, offset: UInt64, size: Int) throws -> [UInt8]

    /// Reads into `buffer`, which holds exactly the requested size, and returns the number of
    /// bytes read; fewer than requested only at the end of the file.
    ///
    /// The buffer is valid only during the call. Filling it directly saves a copy of every
    /// (up to 1 MiB) read. Default: copies the result of ``read(_:handle:offset:size:)``.
    func read(
        _ inode: Inode, handle: Handle, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer
    ) throws -> Int

    /// Writes `data` at `offset` and returns how many bytes were written (all, normally).
    /// `data` is valid only during the call. Default: `EROFS`.
    func write(_ inode: Inode, handle: Handle, offset: UInt64, data: UnsafeRawBufferPointer) throws
        -> Int

    /// Called on every `close(2)` of a descriptor for this open file; its error is what
    /// `close` returns, so this is the place to refuse an incomplete file. Default: nothing.
    func flush(_ inode: Inode, handle: Handle) throws

    /// The last descriptor for this open file is gone. The kernel ignores errors from here.
    /// Default: nothing.
    func release(_ inode: Inode, handle: Handle, flags: OpenFlags) throws

    /// `fsync(2)` (`dataOnly` for `fdatasync`). Default: nothing.
    func fsync(_ inode: Inode, handle: Handle, dataOnly: Bool) throws

    // MARK: Directories

    /// Default: ``Handle/none``.
    func opendir(_ inode: Inode, flags: OpenFlags) throws -> OpenResult

    /// Lists the directory from position `offset` on (0 is the start). The FUSE edge sends as
    /// many entries as fit the kernel's buffer and asks again from the next position, so the
    /// i-th returned entry has position `offset + i + 1`. Include `.` and `..` for `ls -a`.
    func readdir(_ inode: Inode, handle: Handle, offset: UInt64) throws -> [DirectoryEntry]

    /// Default: nothing.
    func releasedir(_ inode: Inode, handle: Handle) throws

    /// Default: nothing.
    func fsyncdir(_ inode: Inode, handle: Handle, dataOnly: Bool) throws

    // MARK: Filesystem

    /// What `df` shows. Default: zero blocks of 4096 bytes, names up to 255 bytes.
    func statfs(_ inode: Inode) throws -> FilesystemStatistics

    /// `access(2)` without `-o default_permissions`. `mask` is `R_OK | W_OK | X_OK` or `F_OK`.
    /// Default: `ENOSYS`, after which the kernel allows everything and stops asking.
    func access(_ inode: Inode, mask: Int32) throws
}

extension FUSEFilesystem {
    public func initialize(connection: inout FUSEConnection, notifier: FUSENotifier) {}
    public var requestCounts: FUSERequestCounts? { nil }
    public func destroy() {}
    public var attributeTimeout: Double { 1 }
    public var entryTimeout: Double { 1 }

    public func errorNumber(for error: any Error, operation: FUSEOperation) -> Int32 {
        (error as? FUSEError)?.code ?? FUSEError.io.code
    }

    public func forget(_ inode: Inode, lookups: UInt64) {}

    public func setattr(_ inode: Inode, changes: AttributeChanges, handle: Handle?) throws
        -> Attributes
    {
        throw FUSEError.readOnly
    }

    public func readlink(_ inode: Inode) throws -> String { throw FUSEError.invalid }

    public func mkdir(parent: Inode, name: String, permissions: UInt16) throws -> Entry {
        throw FUSEError.readOnly
    }

    public func unlink(parent: Inode, name: String) throws { throw FUSEError.readOnly }
    public func rmdir(parent: Inode, name: String) throws { throw FUSEError.readOnly }

    public func symlink(target: String, parent: Inode, name: String) throws -> Entry {
        throw FUSEError.readOnly
    }

    public func rename(
        parent: Inode, name: String, newParent: Inode, newName: String, flags: RenameFlags
    ) throws {
        throw FUSEError.readOnly
    }

    public func link(_ inode: Inode, newParent: Inode, newName: String) throws -> Entry {
        throw FUSEError.notPermitted
    }

    public func open(_ inode: Inode, flags: OpenFlags) throws -> OpenResult {
        if flags.isWritable { throw FUSEError.readOnly }
        return OpenResult()
    }

    public func create(
        parent: Inode, name: String, permissions: UInt16, flags: OpenFlags
    ) throws -> (entry: Entry, file: OpenResult) {
        throw FUSEError.readOnly
    }

    public func read(_ inode: Inode, handle: Handle, offset: UInt64, size: Int) throws -> [UInt8] {
        throw FUSEError.notImplemented
    }

    public func read(
        _ inode: Inode, handle: Handle, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer
    ) throws -> Int {
        let bytes = try read(inode, handle: handle, offset: offset, size: buffer.count)
        precondition(bytes.count <= buffer.count, "read returned more bytes than requested")
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        return bytes.count
    }

    public func write(_ inode: Inode, handle: Handle, offset: UInt64, data: UnsafeRawBufferPointer)
        throws -> Int
    {
        throw FUSEError.readOnly
    }

    public func flush(_ inode: Inode, handle: Handle) throws {}
    public func release(_ inode: Inode, handle: Handle, flags: OpenFlags) throws {}
    public func fsync(_ inode: Inode, handle: Handle, dataOnly: Bool) throws {}

    public func opendir(_ inode: Inode, flags: OpenFlags) throws -> OpenResult { OpenResult() }
    public func releasedir(_ inode: Inode, handle: Handle) throws {}
    public func fsyncdir(_ inode: Inode, handle: Handle, dataOnly: Bool) throws {}

    public func statfs(_ inode: Inode) throws -> FilesystemStatistics { FilesystemStatistics() }
    public func access(_ inode: Inode, mask: Int32) throws { throw FUSEError.notImplemented }
}
