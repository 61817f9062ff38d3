// The values a FUSE filesystem speaks in: plain Swift structs, so that no C type from libfuse ever
// appears in a public signature. FUSEOperations.swift converts them to and from libfuse's structs.

import Glibc

/// The kernel's number for a file or directory of a mounted filesystem.
///
/// The filesystem chooses the numbers (in `lookup`, `mkdir`, `create`, ...); the kernel hands them
/// back in later requests until it forgets them. ``root`` (1) is fixed by the protocol.
public struct Inode: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// The mount's root directory.
    public static let root = Inode(1)

    public static func < (lhs: Inode, rhs: Inode) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "inode \(rawValue)" }
}

/// The number a filesystem gives an open file or directory in `open`, `create` or `opendir`.
///
/// The kernel passes it back with every request on that open file until `release`. Its meaning
/// is the filesystem's own; 0 is fine when a filesystem keeps no per-open state.
/// (libfuse calls it `fh`; the name avoids a clash with Foundation's `FileHandle`.)
public struct Handle: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    public static let none = Handle(0)
    public var description: String { "handle \(rawValue)" }
}

/// A point in time with nanosecond resolution, as `struct timespec` holds it.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32 = 0) {
        precondition(nanoseconds < 1_000_000_000, "nanoseconds out of range")
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static let zero = Timestamp(seconds: 0)

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        (lhs.seconds, lhs.nanoseconds) < (rhs.seconds, rhs.nanoseconds)
    }

    public var description: String {
        "\(seconds).\(String(nanoseconds + 1_000_000_000).dropFirst())"
    }
}

/// What kind of file an inode is; the upper bits of `st_mode`.
public enum FileKind: Sendable, Hashable {
    case regular
    case directory
    case symbolicLink
    case fifo
    case socket
    case characterDevice
    case blockDevice
}

/// What `stat` shows for a file.
public struct Attributes: Hashable, Sendable {
    public var inode: Inode
    public var kind: FileKind
    /// Permission bits (`0o7777` at most), without the file-kind bits.
    public var permissions: UInt16
    public var linkCount: UInt32
    public var size: UInt64
    /// Space used, in 512-byte units; `nil` derives it from ``size``.
    public var blocks: UInt64?
    /// The I/O size `stat` advertises (`st_blksize`); `cp` and `cat` read and write in this size.
    public var preferredIOSize: UInt32
    /// Owner; the initializer defaults it to the process's user and group.
    public var uid: UInt32
    public var gid: UInt32
    public var accessTime: Timestamp
    public var modificationTime: Timestamp
    public var changeTime: Timestamp
    /// Device number, for character and block devices only.
    public var device: UInt64

    public init(
        inode: Inode, kind: FileKind, permissions: UInt16, linkCount: UInt32 = 1, size: UInt64 = 0,
        blocks: UInt64? = nil, preferredIOSize: UInt32 = 1 << 20, uid: UInt32? = nil,
        gid: UInt32? = nil,
        accessTime: Timestamp = .zero, modificationTime: Timestamp = .zero,
        changeTime: Timestamp = .zero, device: UInt64 = 0
    ) {
        self.inode = inode
        self.kind = kind
        self.permissions = permissions
        self.linkCount = linkCount
        self.size = size
        self.blocks = blocks
        self.preferredIOSize = preferredIOSize
        self.uid = uid ?? getuid()
        self.gid = gid ?? getgid()
        self.accessTime = accessTime
        self.modificationTime = modificationTime
        self.changeTime = changeTime
        self.device = device
    }
}

/// The answer to a lookup, and to every request that creates a name (`mkdir`, `create`, ...).
///
/// Each `Entry` a filesystem returns counts as one lookup of its inode, which the kernel later
/// pays back with `forget`.
public struct Entry: Hashable, Sendable {
    public var attributes: Attributes
    /// Must change when an inode number is reused for a different file (NFS export only).
    public var generation: UInt64
    /// Seconds the kernel may keep the attributes; `nil` uses the filesystem's `attributeTimeout`.
    public var attributeTimeout: Double?
    /// Seconds the kernel may keep the name; `nil` uses the filesystem's `entryTimeout`.
    public var entryTimeout: Double?

    public init(
        attributes: Attributes, generation: UInt64 = 0, attributeTimeout: Double? = nil,
        entryTimeout: Double? = nil
    ) {
        self.attributes = attributes
        self.generation = generation
        self.attributeTimeout = attributeTimeout
        self.entryTimeout = entryTimeout
    }

    public var inode: Inode { attributes.inode }
}

/// One name in a directory listing.
public struct DirectoryEntry: Hashable, Sendable {
    public var name: String
    public var inode: Inode
    public var kind: FileKind
    /// Full attributes, used only when readdirplus is on (``FUSEConnection/readdirPlus``): the
    /// kernel then needs no lookup per name for `ls -l`. An entry with attributes counts as a
    /// lookup of its inode (to be paid back with `forget`), except for `.` and `..`.
    public var entry: Entry?

    public init(name: String, inode: Inode, kind: FileKind, entry: Entry? = nil) {
        self.name = name
        self.inode = inode
        self.kind = kind
        self.entry = entry
    }

    /// A listing entry carrying full attributes, for readdirplus.
    public init(name: String, entry: Entry) {
        self.init(name: name, inode: entry.inode, kind: entry.attributes.kind, entry: entry)
    }
}

/// The changes `setattr` asks for; `nil` means leave as it is.
public struct AttributeChanges: Hashable, Sendable {
    public enum Time: Hashable, Sendable {
        /// The filesystem's current time (`touch` without a date).
        case now
        case time(Timestamp)
    }

    /// New permission bits (`chmod`), without the file-kind bits.
    public var permissions: UInt16?
    public var uid: UInt32?
    public var gid: UInt32?
    /// New size (`truncate`, `open(O_TRUNC)`, `ftruncate`).
    public var size: UInt64?
    public var accessTime: Time?
    public var modificationTime: Time?
    public var changeTime: Timestamp?

    public init(
        permissions: UInt16? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
        accessTime: Time? = nil, modificationTime: Time? = nil, changeTime: Timestamp? = nil
    ) {
        self.permissions = permissions
        self.uid = uid
        self.gid = gid
        self.size = size
        self.accessTime = accessTime
        self.modificationTime = modificationTime
        self.changeTime = changeTime
    }

    /// True if only times change (`touch`): no size, mode or owner change.
    public var changesOnlyTimes: Bool {
        permissions == nil && uid == nil && gid == nil && size == nil
    }
}

/// The flags of an `open(2)` call, as the kernel passes them on.
public struct OpenFlags: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public enum AccessMode: Sendable { case readOnly, writeOnly, readWrite }

    public var accessMode: AccessMode {
        switch rawValue & 0o3 {
        case 0: .readOnly
        case 1: .writeOnly
        default: .readWrite
        }
    }
    public var isWritable: Bool { accessMode != .readOnly }
    /// `O_TRUNC`; reaches `open` only if ``FUSEConnection/atomicOpenTruncate`` is on, otherwise
    /// the kernel sends a `setattr` with size 0 first.
    public var truncate: Bool { rawValue & 0o1000 != 0 }
    public var append: Bool { rawValue & 0o2000 != 0 }
    public var exclusive: Bool { rawValue & 0o200 != 0 }
}

/// The flags of `renameat2(2)`.
public struct RenameFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Fail with EEXIST instead of replacing the target (`RENAME_NOREPLACE`).
    public static let noReplace = RenameFlags(rawValue: 1)
    /// Swap source and target atomically (`RENAME_EXCHANGE`).
    public static let exchange = RenameFlags(rawValue: 2)
}

/// The answer to `open`, `opendir` and `create`: a handle plus how the kernel should cache.
public struct OpenResult: Hashable, Sendable {
    public var handle: Handle
    /// Keep pages cached from earlier opens; right when the file did not change in between.
    public var keepCache: Bool
    /// Bypass the page cache: reads and writes reach the filesystem with the caller's sizes and
    /// offsets, and the file size need not be known in advance.
    public var directIO: Bool
    /// `lseek` is refused; for streams.
    public var nonSeekable: Bool
    /// For `opendir`: the kernel may cache the listing.
    public var cacheDirectory: Bool
    /// `close` sends no flush request (a handle that cannot have written anything).
    public var noFlush: Bool

    public init(
        handle: Handle = .none, keepCache: Bool = false, directIO: Bool = false,
        nonSeekable: Bool = false, cacheDirectory: Bool = false, noFlush: Bool = false
    ) {
        self.handle = handle
        self.keepCache = keepCache
        self.directIO = directIO
        self.nonSeekable = nonSeekable
        self.cacheDirectory = cacheDirectory
        self.noFlush = noFlush
    }
}

/// What `statfs` (and `df`) shows.
public struct FilesystemStatistics: Hashable, Sendable {
    public var blockSize: UInt64
    public var fragmentSize: UInt64
    /// Size, free and available space, in ``fragmentSize`` units.
    public var blocks: UInt64
    public var freeBlocks: UInt64
    public var availableBlocks: UInt64
    public var files: UInt64
    public var freeFiles: UInt64
    public var availableFiles: UInt64
    public var maximumNameLength: UInt64

    public init(
        blockSize: UInt64 = 4096, fragmentSize: UInt64? = nil, blocks: UInt64 = 0,
        freeBlocks: UInt64 = 0, availableBlocks: UInt64? = nil, files: UInt64 = 0,
        freeFiles: UInt64 = 0, availableFiles: UInt64? = nil, maximumNameLength: UInt64 = 255
    ) {
        self.blockSize = blockSize
        self.fragmentSize = fragmentSize ?? blockSize
        self.blocks = blocks
        self.freeBlocks = freeBlocks
        self.availableBlocks = availableBlocks ?? freeBlocks
        self.files = files
        self.freeFiles = freeFiles
        self.availableFiles = availableFiles ?? freeFiles
        self.maximumNameLength = maximumNameLength
    }
}

/// The connection settings agreed with the kernel at mount time.
///
/// The FUSE edge fills in defaults suited to a filesystem that must see every write exactly as
/// the application made it; a filesystem may change them in
/// ``FUSEFilesystem/initialize(connection:notifier:)``. Settings the kernel cannot do are dropped.
public struct FUSEConnection: Sendable {
    /// FUSE protocol version of the kernel (read-only).
    public let protocolMajor: UInt32
    public let protocolMinor: UInt32

    /// Largest write request; 1 MiB lets `cp` and `dd bs=1M` arrive in one piece. libfuse caps it
    /// at its buffer size. The kernel also sizes its read requests after it (max_pages).
    public var maxWrite: UInt32 = 1 << 20
    /// Largest readahead the filesystem accepts. The kernel caps it at its own offer (often
    /// 128 KiB); `FUSESession.run(readaheadKiB:)` raises the mount's readahead after mounting.
    public var maxReadahead: UInt32 = 1 << 20
    /// Let the kernel send several reads of one file at a time (readahead in parallel).
    public var asyncRead = true
    /// Kernel write-back caching: off, so every write reaches the filesystem as it is made
    /// and the file size is the filesystem's. On, the kernel merges writes and owns mtime.
    public var writebackCache = false
    /// Answer directory listings with attributes (readdirplus), saving a lookup per name.
    /// Needs ``DirectoryEntry/entry`` filled in by `readdir`.
    public var readdirPlus = false
    /// Let lookups and creates in one directory run in parallel.
    public var parallelDirectoryOperations = true
    /// Drop cached pages when getattr shows a changed mtime or size.
    public var autoInvalidateData = true
    /// Pass `O_TRUNC` to `open` instead of sending `setattr(size: 0)` first. Off, so truncation
    /// always arrives as `setattr`.
    public var atomicOpenTruncate = false
    /// Let the kernel cache symlink targets.
    public var cacheSymlinks = false
    /// Timestamp resolution the filesystem keeps, in nanoseconds (1 = full resolution).
    public var timeGranularity: UInt32 = 1
    /// Most background requests (readahead, async direct I/O) the kernel keeps in flight; 0
    /// keeps the kernel default.
    public var maxBackground: UInt16 = 0

    public init(protocolMajor: UInt32, protocolMinor: UInt32) {
        self.protocolMajor = protocolMajor
        self.protocolMinor = protocolMinor
    }
}

/// Names of the requests, for error reports and logs.
public enum FUSEOperation: String, Sendable, CaseIterable, CustomStringConvertible {
    case lookup, forget, getattr, setattr, readlink, mkdir, unlink, rmdir, symlink, rename, link
    case open, read, write, flush, release, fsync
    case opendir, readdir, readdirplus, releasedir, fsyncdir
    case statfs, access, create

    public var description: String { rawValue }
}
