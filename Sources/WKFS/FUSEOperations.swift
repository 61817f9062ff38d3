// The libfuse low-level callbacks: one @convention(c) closure per request, each finding the Swift
// filesystem through fuse_req_userdata, calling it, and replying. libfuse calls them from its
// worker threads, so nothing here is actor-isolated and nothing holds mutable global state.
// This file and FUSESession.swift are the only ones that touch libfuse's C types.

internal import CFUSE
import Glibc

/// What the callbacks reach through `fuse_req_userdata`: the filesystem and the session's log.
///
/// `FUSESession` keeps it alive for as long as the C session exists.
final class FilesystemBox: Sendable {
    let filesystem: any FUSEFilesystem
    let notifier: FUSENotifier
    let log: @Sendable (String) -> Void
    let counts: FUSERequestCounts?

    init(
        filesystem: any FUSEFilesystem, notifier: FUSENotifier,
        log: @escaping @Sendable (String) -> Void
    ) {
        self.filesystem = filesystem
        self.notifier = notifier
        self.log = log
        counts = filesystem.requestCounts
    }

    /// The one place where a thrown error becomes the errno of a reply.
    func fail(
        _ request: fuse_req_t?, _ error: any Error, _ operation: FUSEOperation, _ inode: UInt64
    ) {
        var code = filesystem.errorNumber(for: error, operation: operation)
        if code <= 0 { code = EIO }
        if code == EIO { log("\(operation) of inode \(inode) failed: \(error)") }
        _ = fuse_reply_err(request, code)
    }

    func entryParameters(_ entry: Entry) -> fuse_entry_param {
        var parameters = fuse_entry_param()
        parameters.ino = entry.inode.rawValue
        parameters.generation = entry.generation
        parameters.attr = cStat(entry.attributes)
        parameters.attr_timeout = entry.attributeTimeout ?? filesystem.attributeTimeout
        parameters.entry_timeout = entry.entryTimeout ?? filesystem.entryTimeout
        return parameters
    }
}

/// Runs one request: `body` replies on success; a thrown error is replied here.
@inline(__always)
private func serve(
    _ request: fuse_req_t?, _ operation: FUSEOperation, _ inode: UInt64,
    _ body: (FilesystemBox) throws -> Void
) {
    let box = Unmanaged<FilesystemBox>.fromOpaque(fuse_req_userdata(request)!)
        .takeUnretainedValue()
    FUSECaller.set(fuse_req_ctx(request)?.pointee.pid)
    defer { FUSECaller.set(nil) }
    do {
        try body(box)
        box.counts?.record(operation, failed: false)
    } catch {
        box.fail(request, error, operation, inode)
        box.counts?.record(operation, failed: true)
    }
}

/// A name from the kernel; not valid UTF-8 fails with `invalid`.
private func decodeName(_ name: UnsafePointer<CChar>?, invalid: FUSEError = .invalid) throws
    -> String
{
    guard let name else { throw invalid }
    let bytes = UnsafeBufferPointer(start: name, count: strlen(name))
    guard let string = String(validating: bytes.lazy.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    else { throw invalid }
    return string
}

extension FileKind {
    /// The `S_IFMT` bits of `st_mode`.
    var modeBits: mode_t {
        switch self {
        case .regular: 0o100000
        case .directory: 0o040000
        case .symbolicLink: 0o120000
        case .fifo: 0o010000
        case .socket: 0o140000
        case .characterDevice: 0o020000
        case .blockDevice: 0o060000
        }
    }
}

extension Timestamp {
    /// The current wall-clock time (`CLOCK_REALTIME`).
    public static var now: Timestamp {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Timestamp(seconds: Int64(time.tv_sec), nanoseconds: UInt32(time.tv_nsec))
    }
}

private func cTimespec(_ time: Timestamp) -> timespec {
    timespec(tv_sec: Int(time.seconds), tv_nsec: Int(time.nanoseconds))
}

private func timestamp(_ time: timespec) -> Timestamp {
    let nanoseconds = UInt32(clamping: max(0, min(time.tv_nsec, 999_999_999)))
    return Timestamp(seconds: Int64(time.tv_sec), nanoseconds: nanoseconds)
}

func cStat(_ attributes: Attributes) -> stat {
    var result = stat()
    result.st_ino = ino_t(attributes.inode.rawValue)
    result.st_mode = attributes.kind.modeBits | mode_t(attributes.permissions & 0o7777)
    result.st_nlink = nlink_t(attributes.linkCount)
    result.st_uid = attributes.uid
    result.st_gid = attributes.gid
    result.st_size = off_t(clamping: attributes.size)
    result.st_blocks = blkcnt_t(clamping: attributes.blocks ?? (attributes.size + 511) / 512)
    result.st_blksize = blksize_t(attributes.preferredIOSize)
    result.st_atim = cTimespec(attributes.accessTime)
    result.st_mtim = cTimespec(attributes.modificationTime)
    result.st_ctim = cTimespec(attributes.changeTime)
    result.st_rdev = dev_t(attributes.device)
    return result
}

private func attributeChanges(_ attributes: stat, _ toSet: Int32) -> AttributeChanges {
    func has(_ flag: Int32) -> Bool { toSet & flag != 0 }
    var changes = AttributeChanges()
    if has(FUSE_SET_ATTR_MODE) { changes.permissions = UInt16(attributes.st_mode & 0o7777) }
    if has(FUSE_SET_ATTR_UID) { changes.uid = attributes.st_uid }
    if has(FUSE_SET_ATTR_GID) { changes.gid = attributes.st_gid }
    if has(FUSE_SET_ATTR_SIZE) { changes.size = UInt64(max(0, attributes.st_size)) }
    if has(FUSE_SET_ATTR_ATIME_NOW) {
        changes.accessTime = .now
    } else if has(FUSE_SET_ATTR_ATIME) {
        changes.accessTime = .time(timestamp(attributes.st_atim))
    }
    if has(FUSE_SET_ATTR_MTIME_NOW) {
        changes.modificationTime = .now
    } else if has(FUSE_SET_ATTR_MTIME) {
        changes.modificationTime = .time(timestamp(attributes.st_mtim))
    }
    if has(FUSE_SET_ATTR_CTIME) { changes.changeTime = timestamp(attributes.st_ctim) }
    return changes
}

private func setOpenAnswer(_ info: UnsafeMutablePointer<fuse_file_info>, _ result: OpenResult) {
    info.pointee.fh = result.handle.rawValue
    info.pointee.direct_io = result.directIO ? 1 : 0
    info.pointee.keep_cache = result.keepCache ? 1 : 0
    info.pointee.nonseekable = result.nonSeekable ? 1 : 0
    info.pointee.cache_readdir = result.cacheDirectory ? 1 : 0
    info.pointee.noflush = result.noFlush ? 1 : 0
}

private func handle(_ info: UnsafeMutablePointer<fuse_file_info>?) -> Handle {
    Handle(info?.pointee.fh ?? 0)
}

private func openFlags(_ info: UnsafeMutablePointer<fuse_file_info>?) -> OpenFlags {
    OpenFlags(rawValue: info?.pointee.flags ?? 0)
}

/// Turns the settings a filesystem chose into the connection's `want` flags and limits.
private func apply(_ settings: FUSEConnection, to connection: UnsafeMutablePointer<fuse_conn_info>)
{
    func set(_ capability: Int32, _ on: Bool) {
        let flag = UInt32(capability)
        if on && connection.pointee.capable & flag != 0 {
            connection.pointee.want |= flag
        } else {
            connection.pointee.want &= ~flag
        }
    }
    connection.pointee.max_write = settings.maxWrite
    connection.pointee.max_readahead = min(settings.maxReadahead, connection.pointee.max_readahead)
    set(FUSE_CAP_ASYNC_READ, settings.asyncRead)
    set(FUSE_CAP_WRITEBACK_CACHE, settings.writebackCache)
    set(FUSE_CAP_READDIRPLUS, settings.readdirPlus)
    set(FUSE_CAP_READDIRPLUS_AUTO, settings.readdirPlus)
    set(FUSE_CAP_PARALLEL_DIROPS, settings.parallelDirectoryOperations)
    set(FUSE_CAP_AUTO_INVAL_DATA, settings.autoInvalidateData)
    set(FUSE_CAP_ATOMIC_O_TRUNC, settings.atomicOpenTruncate)
    set(FUSE_CAP_CACHE_SYMLINKS, settings.cacheSymlinks)
    // Not wanted: splicing (plain buffers are simpler and fast enough), NFS export, and the
    // kernel leaving suid/sgid clearing to us.
    set(FUSE_CAP_SPLICE_READ, false)
    set(FUSE_CAP_SPLICE_WRITE, false)
    set(FUSE_CAP_SPLICE_MOVE, false)
    set(FUSE_CAP_EXPORT_SUPPORT, false)
    set(FUSE_CAP_HANDLE_KILLPRIV, false)
    connection.pointee.time_gran = max(1, settings.timeGranularity)
    if settings.maxBackground > 0 {
        connection.pointee.max_background = UInt32(settings.maxBackground)
        connection.pointee.congestion_threshold = UInt32(settings.maxBackground) * 3 / 4
    }
}

/// Fills a reply buffer of `size` bytes with directory entries from position `offset` on.
private func replyDirectory(
    _ request: fuse_req_t?, _ inode: fuse_ino_t, _ size: Int, _ offset: off_t,
    _ info: UnsafeMutablePointer<fuse_file_info>?, plus: Bool
) {
    serve(request, plus ? .readdirplus : .readdir, inode) { box in
        let entries = try box.filesystem.readdir(
            Inode(inode), handle: handle(info), offset: UInt64(max(0, offset)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 8)
        defer { buffer.deallocate() }
        let start = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
        var used = 0
        for (index, item) in entries.enumerated() {
            let next = offset + off_t(index) + 1
            let room = size - used
            let needed = item.name.withCString { name in
                if plus {
                    var parameters: fuse_entry_param
                    if let entry = item.entry {
                        parameters = box.entryParameters(entry)
                    } else {
                        // Inode 0: a name without attributes; the kernel looks it up later.
                        parameters = fuse_entry_param()
                        parameters.attr.st_ino = ino_t(item.inode.rawValue)
                        parameters.attr.st_mode = item.kind.modeBits
                    }
                    return fuse_add_direntry_plus(
                        request, start + used, room, name, &parameters, next)
                } else {
                    var attributes = stat()
                    attributes.st_ino = ino_t(item.inode.rawValue)
                    attributes.st_mode = item.kind.modeBits
                    return fuse_add_direntry(request, start + used, room, name, &attributes, next)
                }
            }
            if needed > room { break }
            used += needed
        }
        _ = fuse_reply_buf(request, start, used)
    }
}

/// The table of callbacks handed to `fuse_session_new`. Requests without a callback here
/// (xattrs, locks, ioctl, fallocate, ...) get `ENOSYS` from libfuse, which the kernel
/// remembers and answers itself from then on.
func makeLowLevelOperations() -> fuse_lowlevel_ops {
    var operations = fuse_lowlevel_ops()

    operations.`init` = { userdata, connection in
        guard let userdata, let connection else { return }
        let box = Unmanaged<FilesystemBox>.fromOpaque(userdata).takeUnretainedValue()
        var settings = FUSEConnection(
            protocolMajor: connection.pointee.proto_major,
            protocolMinor: connection.pointee.proto_minor)
        box.filesystem.initialize(connection: &settings, notifier: box.notifier)
        apply(settings, to: connection)
    }

    operations.destroy = { userdata in
        guard let userdata else { return }
        Unmanaged<FilesystemBox>.fromOpaque(userdata).takeUnretainedValue().filesystem.destroy()
    }

    operations.lookup = { request, parent, name in
        serve(request, .lookup, parent) { box in
            let name = try decodeName(name, invalid: .noEntry)
            var parameters = box.entryParameters(
                try box.filesystem.lookup(parent: Inode(parent), name: name))
            _ = fuse_reply_entry(request, &parameters)
        }
    }

    operations.forget = { request, inode, lookups in
        serve(request, .forget, inode) { box in
            box.filesystem.forget(Inode(inode), lookups: lookups)
        }
        fuse_reply_none(request)
    }

    operations.forget_multi = { request, count, forgets in
        serve(request, .forget, 0) { box in
            for item in UnsafeBufferPointer(start: forgets, count: forgets == nil ? 0 : count) {
                box.filesystem.forget(Inode(item.ino), lookups: item.nlookup)
            }
        }
        fuse_reply_none(request)
    }

    operations.getattr = { request, inode, _ in
        serve(request, .getattr, inode) { box in
            var attributes = cStat(try box.filesystem.getattr(Inode(inode)))
            _ = fuse_reply_attr(request, &attributes, box.filesystem.attributeTimeout)
        }
    }

    operations.setattr = { request, inode, attributes, toSet, info in
        serve(request, .setattr, inode) { box in
            guard let attributes else { throw FUSEError.invalid }
            let changes = attributeChanges(attributes.pointee, toSet)
            var result = cStat(
                try box.filesystem.setattr(
                    Inode(inode), changes: changes, handle: info.map { Handle($0.pointee.fh) }))
            _ = fuse_reply_attr(request, &result, box.filesystem.attributeTimeout)
        }
    }

    operations.readlink = { request, inode in
        serve(request, .readlink, inode) { box in
            let target = try box.filesystem.readlink(Inode(inode))
            _ = target.withCString { fuse_reply_readlink(request, $0) }
        }
    }

    operations.mkdir = { request, parent, name, mode in
        serve(request, .mkdir, parent) { box in
            let entry = try box.filesystem.mkdir(
                parent: Inode(parent), name: try decodeName(name),
                permissions: UInt16(mode & 0o7777))
            var parameters = box.entryParameters(entry)
            _ = fuse_reply_entry(request, &parameters)
        }
    }

    operations.unlink = { request, parent, name in
        serve(request, .unlink, parent) { box in
            try box.filesystem.unlink(parent: Inode(parent), name: try decodeName(name))
            _ = fuse_reply_err(request, 0)
        }
    }

    operations.rmdir = { request, parent, name in
        serve(request, .rmdir, parent) { box in
            try box.filesystem.rmdir(parent: Inode(parent), name: try decodeName(name))
            _ = fuse_reply_err(request, 0)
        }
    }

    operations.symlink = { request, target, parent, name in
        serve(request, .symlink, parent) { box in
            let entry = try box.filesystem.symlink(
                target: try decodeName(target), parent: Inode(parent), name: try decodeName(name))
            var parameters = box.entryParameters(entry)
            _ = fuse_reply_entry(request, &parameters)
        }
    }

    operations.rename = { request, parent, name, newParent, newName, flags in
        serve(request, .rename, parent) { box in
            try box.filesystem.rename(
                parent: Inode(parent), name: try decodeName(name), newParent: Inode(newParent),
                newName: try decodeName(newName), flags: RenameFlags(rawValue: flags))
            _ = fuse_reply_err(request, 0)
        }
    }

    operations.link = { request, inode, newParent, newName in
        serve(request, .link, inode) { box in
            let entry = try box.filesystem.link(
                Inode(inode), newParent: Inode(newParent), newName: try decodeName(newName))
            var parameters = box.entryParameters(entry)
            _ = fuse_reply_entry(request, &parameters)
        }
    }

    operations.open = { request, inode, info in
        serve(request, .open, inode) { box in
            guard let info else { throw FUSEError.invalid }
            let flags = openFlags(info)
            let result = try box.filesystem.open(Inode(inode), flags: flags)
            setOpenAnswer(info, result)
            if fuse_reply_open(request, info) == -ENOENT {
                // The caller was interrupted: the kernel will never release this handle.
                try? box.filesystem.release(Inode(inode), handle: result.handle, flags: flags)
            }
        }
    }

    operations.create = { request, parent, name, mode, info in
        serve(request, .create, parent) { box in
            guard let info else { throw FUSEError.invalid }
            let flags = openFlags(info)
            let (entry, file) = try box.filesystem.create(
                parent: Inode(parent), name: try decodeName(name),
                permissions: UInt16(mode & 0o7777), flags: flags)
            setOpenAnswer(info, file)
            var parameters = box.entryParameters(entry)
            if fuse_reply_create(request, &parameters, info) == -ENOENT {
                try? box.filesystem.release(entry.inode, handle: file.handle, flags: flags)
            }
        }
    }

    operations.read = { request, inode, size, offset, info in
        serve(request, .read, inode) { box in
            let buffer = UnsafeMutableRawBufferPointer.allocate(
                byteCount: max(size, 1), alignment: 16)
            defer { buffer.deallocate() }
            let count = try box.filesystem.read(
                Inode(inode), handle: handle(info), offset: UInt64(max(0, offset)),
                into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<size]))
            precondition(count >= 0 && count <= size, "read returned \(count) of \(size) bytes")
            _ = fuse_reply_buf(
                request, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), count)
        }
    }

    operations.write = { request, inode, bytes, size, offset, info in
        serve(request, .write, inode) { box in
            let count = try box.filesystem.write(
                Inode(inode), handle: handle(info), offset: UInt64(max(0, offset)),
                data: UnsafeRawBufferPointer(start: bytes, count: bytes == nil ? 0 : size))
            precondition(count >= 0 && count <= size, "write took \(count) of \(size) bytes")
            _ = fuse_reply_write(request, count)
        }
    }

    operations.flush = { request, inode, info in
        serve(request, .flush, inode) { box in
            try box.filesystem.flush(Inode(inode), handle: handle(info))
            _ = fuse_reply_err(request, 0)
        }
    }

    operations.release = { request, inode, info in
        serve(request, .release, inode) { box in
            try box.filesystem.release(Inode(inode), handle: handle(info), flags: openFlags(info))
            _ = fuse_reply_err(request, 0)
        }
    }

    operations.fsync = { request, inode, dataOnly, info in
        serve(request, .fsync, inode) { box in
            try box.filesystem.fsync(Inode(inode), handle: handle(info), dataOnly: dataOnly != 0)
            _ = fuse_reply_err(request, 0)
        }
    }

    operations.opendir = { request, inode, info in
        serve(request, .opendir, inode) { box in
            guard let info else { throw FUSEError.invalid }
            let result = try box.filesystem.opendir(Inode(inode), flags: openFlags(info))
            setOpenAnswer(info, result)
            if fuse_reply_open(request, info) == -ENOENT {
                try? box.filesystem.releasedir(Inode(inode), handle: result.handle)
            }
        }
    }

    operations.readdir = { request, inode, size, offset, info in
        replyDirectory(request, inode, size, offset, info, plus: false)
    }

    operations.readdirplus = { request, inode, size, offset, info in
        replyDirectory(request, inode, size, offset, info, plus: true)
    }

    operations.releasedir = { request, inode, info in
        serve(request, .releasedir, inode) { box in
            try box.filesystem.releasedir(Inode(inode), handle: handle(info))
            _ = fuse_reply_err(request, 0)
        }
    }

    operations.fsyncdir = { request, inode, dataOnly, info in
        serve(request, .fsyncdir, inode) { box in
            try box.filesystem.fsyncdir(Inode(inode), handle: handle(info), dataOnly: dataOnly != 0)
            _ = fuse_reply_err(request, 0)
        }
    }

    operations.statfs = { request, inode in
        serve(request, .statfs, inode) { box in
            let statistics = try box.filesystem.statfs(Inode(inode))
            var result = statvfs()
            result.f_bsize = UInt(clamping: statistics.blockSize)
            result.f_frsize = UInt(clamping: statistics.fragmentSize)
            result.f_blocks = fsblkcnt_t(clamping: statistics.blocks)
            result.f_bfree = fsblkcnt_t(clamping: statistics.freeBlocks)
            result.f_bavail = fsblkcnt_t(clamping: statistics.availableBlocks)
            result.f_files = fsfilcnt_t(clamping: statistics.files)
            result.f_ffree = fsfilcnt_t(clamping: statistics.freeFiles)
            result.f_favail = fsfilcnt_t(clamping: statistics.availableFiles)
            result.f_namemax = UInt(clamping: statistics.maximumNameLength)
            _ = fuse_reply_statfs(request, &result)
        }
    }

    operations.access = { request, inode, mask in
        serve(request, .access, inode) { box in
            try box.filesystem.access(Inode(inode), mask: mask)
            _ = fuse_reply_err(request, 0)
        }
    }

    return operations
}
