// Mounting, serving and unmounting one FUSE filesystem with libfuse's low-level session API,
// and the kernel cache invalidation a filesystem needs when files change behind the kernel.

internal import CFUSE
import Glibc
import Synchronization

/// The `fuse_session` pointer, shareable because libfuse's notify and exit calls are thread-safe.
struct SessionPointer: @unchecked Sendable {
    let raw: OpaquePointer
}

/// Owns the `fuse_session` pointer on behalf of everything that uses it from other threads:
/// notifications may run at any time, so unmounting waits until none is in flight, and a
/// notification after unmounting fails cleanly instead of writing to a closed descriptor.
final class SessionChannel: Sendable {
    private struct State {
        var session: SessionPointer?
        var mounted = false
        var closing = false
        var notificationsInFlight = 0
    }

    private let state = Mutex(State())

    func attach(_ session: SessionPointer) {
        state.withLock { $0.session = session }
    }

    func setMounted(_ mounted: Bool) {
        state.withLock {
            $0.mounted = mounted
            $0.closing = false
        }
    }

    var session: SessionPointer? { state.withLock { $0.session } }
    var isMounted: Bool { state.withLock { $0.mounted } }

    /// Runs `body` with the session if it is mounted; the unmount waits for it.
    func notify(_ body: (OpaquePointer) -> Int32) throws(FUSEError) -> Int32 {
        let session = state.withLock { state -> SessionPointer? in
            guard state.mounted, !state.closing, let session = state.session else { return nil }
            state.notificationsInFlight += 1
            return session
        }
        guard let session else { throw FUSEError(ENOTCONN, "the filesystem is not mounted") }
        defer { state.withLock { $0.notificationsInFlight -= 1 } }
        return body(session.raw)
    }

    /// Stops new notifications and waits (up to two seconds) for running ones to finish.
    func close() {
        state.withLock { $0.closing = true }
        for _ in 0..<2000 {
            if state.withLock({ $0.notificationsInFlight == 0 }) { return }
            usleep(1000)
        }
    }

    func detach() -> SessionPointer? {
        state.withLock { state in
            defer { state.session = nil }
            return state.session
        }
    }
}

/// Tells the kernel to forget what it cached about a file or name that changed behind its back.
///
/// A filesystem gets one in ``FUSEFilesystem/initialize(connection:notifier:)`` (or from
/// ``FUSESession/notifier``) and may keep it: it does not keep the session alive, and after the
/// session is unmounted its calls throw `ENOTCONN`.
///
/// Do not call these from within the request that caused the change on the same inode or
/// directory (e.g. from `write` for that file, or `rename` in that directory): the kernel holds
/// locks for that request and the call can deadlock. Call them from another thread, or after
/// replying.
public struct FUSENotifier: Sendable {
    weak let channel: SessionChannel?

    init(channel: SessionChannel) { self.channel = channel }

    private func notify(_ what: String, _ body: (OpaquePointer) -> Int32) throws(FUSEError) {
        guard let channel else { throw FUSEError(ENOTCONN, "the FUSE session is gone") }
        let result = try channel.notify(body)
        // ENOENT: the kernel has nothing cached for it, which is what was asked for.
        if result < 0 && result != -ENOENT { throw FUSEError(-result, "cannot invalidate \(what)") }
    }

    /// Drops cached data of `inode` from `offset` on (`length` 0: to the end), and its cached
    /// attributes. A negative `offset` drops only the attributes.
    ///
    /// The corresponding C function is `fuse_lowlevel_notify_inval_inode`.
    public func invalidateInode(_ inode: Inode, offset: Int64 = 0, length: Int64 = 0)
        throws(FUSEError)
    {
        try notify("\(inode)") {
            fuse_lowlevel_notify_inval_inode($0, inode.rawValue, off_t(offset), off_t(length))
        }
    }

    /// Drops the cached name `name` in directory `parent` (and the directory's attributes), so
    /// the next access looks it up again.
    ///
    /// The corresponding C function is `fuse_lowlevel_notify_inval_entry`.
    public func invalidateEntry(parent: Inode, name: String) throws(FUSEError) {
        try notify("entry \(name) in \(parent)") { session in
            name.withCString {
                fuse_lowlevel_notify_inval_entry(session, parent.rawValue, $0, strlen($0))
            }
        }
    }

    /// Like ``invalidateEntry(parent:name:)`` for a name that was deleted, telling inotify
    /// watchers too.
    ///
    /// The corresponding C function is `fuse_lowlevel_notify_delete`.
    public func deleteEntry(parent: Inode, child: Inode, name: String) throws(FUSEError) {
        try notify("entry \(name) in \(parent)") { session in
            name.withCString {
                fuse_lowlevel_notify_delete(
                    session, parent.rawValue, child.rawValue, $0, strlen($0))
            }
        }
    }
}

/// One FUSE mount: creates the libfuse session, mounts it, serves requests on several threads
/// and unmounts.
///
/// ```swift
/// let session = try FUSESession(filesystem: fs, mountPoint: "/mnt/data",
///                               options: ["fsname=data", "subtype=wkfs", "default_permissions"])
/// try session.mount()
/// try session.run()        // until unmounted, SIGINT/SIGTERM/SIGHUP, or exit()
/// session.unmount()
/// ```
public final class FUSESession: Sendable {
    /// The absolute mount point (as given, until ``mount()`` resolves it).
    public var mountPoint: String { state.withLock { $0.mountPoint } }

    /// Invalidates the kernel's caches; see ``FUSENotifier``.
    public let notifier: FUSENotifier

    private let channel: SessionChannel
    private let box: FilesystemBox
    private let allowNonEmptyMountPoint: Bool
    private let log: @Sendable (String) -> Void

    private struct State {
        var mountPoint: String
        var running = false
    }
    private let state: Mutex<State>

    /// Writes a log line to standard error.
    public static let logToStandardError: @Sendable (String) -> Void = { line in
        let text = line.hasSuffix("\n") ? line : line + "\n"
        _ = text.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }

    /// Creates the session; nothing is mounted yet.
    ///
    /// - Parameters:
    ///   - filesystem: Answers the requests, from several threads.
    ///   - mountPoint: An existing empty directory.
    ///   - options: `-o` mount options, one per item: `ro`, `allow_other`, `allow_root`,
    ///     `default_permissions`, `fsname=NAME`, `subtype=wkfs`, `debug` (every request on
    ///     standard error), `max_read=N`, ... Commas inside an item are escaped. `nonempty`
    ///     (a FUSE 2 option) is accepted and allows a non-empty mount point.
    ///   - allowNonEmptyMountPoint: Mount over a directory that has files in it.
    ///   - log: Where the session reports what it could not do (readahead, I/O errors).
    /// - Throws: `FUSEError` with `EINVAL` if libfuse rejects the options (it prints why).
    public init(
        filesystem: any FUSEFilesystem, mountPoint: String, options: [String] = [],
        allowNonEmptyMountPoint: Bool = false,
        log: @escaping @Sendable (String) -> Void = FUSESession.logToStandardError
    ) throws(FUSEError) {
        let channel = SessionChannel()
        let notifier = FUSENotifier(channel: channel)
        let box = FilesystemBox(filesystem: filesystem, notifier: notifier, log: log)
        self.channel = channel
        self.notifier = notifier
        self.box = box
        self.log = log
        self.allowNonEmptyMountPoint =
            allowNonEmptyMountPoint || options.contains("nonempty")
        self.state = Mutex(State(mountPoint: mountPoint))

        let fuseOptions = options.filter { $0 != "nonempty" && !$0.isEmpty }
        var arguments = [CommandLine.arguments.first ?? "fuse"]
        if !fuseOptions.isEmpty {
            arguments += ["-o", fuseOptions.map(Self.escapeOption).joined(separator: ",")]
        }
        let session = Self.withArguments(arguments) { args in
            var operations = makeLowLevelOperations()
            return cfuse_session_new(
                args, &operations, MemoryLayout<fuse_lowlevel_ops>.size,
                Unmanaged.passUnretained(box).toOpaque())
        }
        guard let session else {
            throw FUSEError(EINVAL, "invalid mount options \(options.joined(separator: ","))")
        }
        channel.attach(SessionPointer(raw: session))
    }

    deinit {
        closeSession()
    }

    /// Mounts the filesystem. Requests wait in the kernel until
    /// ``run(threads:readaheadKiB:handleSignals:)`` serves them.
    ///
    /// - Throws: `FUSEError` naming the mount point: `ENOENT` if it does not exist, `ENOTDIR` if
    ///   it is not a directory, `ENOTEMPTY` if it has files in it, `ENOTCONN` if it is a FUSE
    ///   mount whose filesystem died, or the reason the mount itself failed.
    ///
    /// The corresponding C function is `fuse_session_mount`.
    public func mount() throws(FUSEError) {
        guard let session = channel.session else { throw FUSEError(EINVAL, "session is closed") }
        precondition(!channel.isMounted, "FUSESession.mount() called twice")
        let given = mountPoint
        let path = try checkMountPoint(given)
        errno = 0
        if fuse_session_mount(session.raw, path) != 0 {
            let code = errno > 0 ? errno : EIO
            throw FUSEError(code, "cannot mount a FUSE filesystem at \(path)")
        }
        state.withLock { $0.mountPoint = path }
        channel.setMounted(true)
    }

    /// Turns the process into a daemon once mounted: forks, lets the parent exit with status
    /// 0, detaches from the terminal, changes to `/` and sends standard input, output and error
    /// to `/dev/null`. Call between ``mount()`` and ``run(threads:readaheadKiB:handleSignals:)``,
    /// while the process has no other threads.
    ///
    /// The corresponding C function is `fuse_daemonize`.
    /// - Throws: when another thread runs: only the forking thread goes on in the daemon, so a
    ///   lock another one held stays held there (a server that hung at its first reads).
    public func daemonize() throws(FUSEError) {
        let threads = Self.threadCount()
        if threads > 1 { throw FUSEError(EBUSY, "cannot daemonize: \(threads) threads are running (a bug of wkfs; mount with -f)") }
        if fuse_daemonize(0) != 0 { throw FUSEError(errno > 0 ? errno : EIO, "cannot daemonize") }
    }

    /// The threads of this process (the entries of /proc/self/task); 1 when it cannot be read.
    private static func threadCount() -> Int {
        guard let directory = opendir("/proc/self/task") else { return 1 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        return max(1, count)
    }

    /// Serves requests until the filesystem is unmounted (`fusermount3 -u`), ``exit()`` is
    /// called, or (with `handleSignals`) SIGINT, SIGTERM or SIGHUP arrives. Blocks the calling
    /// thread; the requests run on up to `threads` libfuse worker threads.
    ///
    /// - Parameters:
    ///   - threads: Most worker threads serving requests at once.
    ///   - readaheadKiB: Once the kernel connected, the mount's readahead is raised to this
    ///     (in `/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`, root only), so sequential reads
    ///     arrive in requests of up to 1 MiB (`max_pages`) instead of 128 KiB, several at a time:
    ///     4 MiB read the 1 GiB and 4 GiB cubes of `make bench` about 10% faster than 1 MiB
    ///     (alternating runs), with random boxes and small files no slower. `nil` leaves it.
    ///   - handleSignals: Install libfuse's handlers that end the loop on SIGINT, SIGTERM and
    ///     SIGHUP (and ignore SIGPIPE). The calling thread must not block these signals.
    /// - Throws: `FUSEError` if the session loop fails.
    ///
    /// The corresponding C function is `fuse_session_loop_mt`.
    public func run(threads: Int = 10, readaheadKiB: Int? = 4096, handleSignals: Bool = true)
        throws(FUSEError)
    {
        guard let session = channel.session, channel.isMounted else {
            throw FUSEError(ENOTCONN, "FUSESession.run() needs a mounted session")
        }
        let path = mountPoint
        state.withLock {
            precondition(!$0.running, "FUSESession.run() is already running")
            $0.running = true
        }
        defer { state.withLock { $0.running = false } }

        if handleSignals && fuse_set_signal_handlers(session.raw) != 0 {
            throw FUSEError(errno > 0 ? errno : EINVAL, "cannot install signal handlers")
        }
        defer { if handleSignals { fuse_remove_signal_handlers(session.raw) } }

        guard let config = fuse_loop_cfg_create() else {
            throw FUSEError(ENOMEM, "fuse_loop_cfg_create")
        }
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_max_threads(config, UInt32(clamping: max(1, threads)))
        fuse_loop_cfg_set_clone_fd(config, 0)

        if let readaheadKiB {
            let log = self.log
            // Detached: its stat waits for the kernel's INIT, which the loop below answers;
            // it must not keep run() from returning if the loop ends first.
            spawnThread(detached: true) {
                raiseReadahead(mountPoint: path, kib: readaheadKiB, log: log)
            }
        }

        // A signal handler may run on a thread that is not sitting in the loop; it then only
        // sets the exit flag. The watcher turns that flag into a wake-up of the loop.
        let watcher = Watcher(channel: channel, mountPoint: path)
        let watcherThread = spawnThread(detached: false) { watcher.watch() }

        let result = cfuse_session_loop_mt(session.raw, config)

        watcher.stop()
        if let watcherThread { pthread_join(watcherThread, nil) }

        if result < 0 {
            // Unmounted from outside (fusermount3 -u), the loop normally ends with ENODEV, which
            // libfuse takes as the end; this kernel sometimes answers ECONNABORTED instead
            // (seen a few times in a hundred unmounts). Once the mount is gone, that is the end too.
            if -result == ECONNABORTED && !Self.isMounted(path) { return }
            throw FUSEError(-result, "serving the FUSE filesystem at \(path) failed")
        }
        if result > 0 { log("FUSE session at \(path) stopped by signal \(result)") }
    }

    /// Whether a file system is mounted at `path` (listed in `/proc/self/mounts`; `getmntent`
    /// decodes its escapes). Never touches `path` itself, which may have no server.
    static func isMounted(_ path: String) -> Bool {
        guard let table = setmntent("/proc/self/mounts", "r") else { return true }
        defer { endmntent(table) }
        while let entry = getmntent(table) {
            if let directory = entry.pointee.mnt_dir, String(cString: directory) == path { return true }
        }
        return false
    }

    /// Ends ``run(threads:readaheadKiB:handleSignals:)`` from another thread, e.g. one that
    /// handles signals. Requests already running finish first. Does not wait and does not
    /// unmount; call ``unmount()`` after `run` returned.
    ///
    /// The corresponding C function is `fuse_session_exit`.
    public func exit() {
        guard let session = channel.session else { return }
        fuse_session_exit(session.raw)
        if state.withLock({ $0.running }) { wakeLoop(mountPoint: mountPoint) }
    }

    /// Unmounts the filesystem (if still mounted) and closes the session: the filesystem's
    /// `destroy()` runs, notifications fail from now on, and the session cannot mount again.
    /// Call it after `run` returned; when the filesystem was unmounted from outside
    /// (`fusermount3 -u`), it only closes the connection. Does nothing the second time.
    ///
    /// The corresponding C functions are `fuse_session_unmount` and `fuse_session_destroy`.
    public func unmount() {
        if state.withLock({ $0.running }) {
            log(
                "FUSESession.unmount() ignored while run() is running; call exit(), wait for run()"
            )
            return
        }
        closeSession()
    }

    private func closeSession() {
        guard let session = channel.session else { return }
        channel.close()
        if channel.isMounted { fuse_session_unmount(session.raw) }
        channel.setMounted(false)
        if let session = channel.detach() { fuse_session_destroy(session.raw) }
    }

    /// Whether the filesystem is mounted by this session.
    public var isMounted: Bool { channel.isMounted }

    // MARK: Helpers

    /// Builds a `fuse_args` from Swift strings for the duration of `body`.
    private static func withArguments<Result>(
        _ arguments: [String], _ body: (UnsafeMutablePointer<fuse_args>) -> Result
    ) -> Result {
        var cStrings: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        cStrings.append(nil)
        defer { for pointer in cStrings { free(pointer) } }
        return cStrings.withUnsafeMutableBufferPointer { argv in
            var args = fuse_args(argc: Int32(arguments.count), argv: argv.baseAddress, allocated: 0)
            // libfuse replaces args with copies it allocates while parsing; free those.
            defer { fuse_opt_free_args(&args) }
            return body(&args)
        }
    }

    /// Escapes `,` and `\` in one `-o` item, as libfuse's option parser expects.
    private static func escapeOption(_ option: String) -> String {
        var escaped = ""
        for character in option {
            if character == "," || character == "\\" { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }

    /// Resolves the mount point and checks it is an existing, empty directory.
    private func checkMountPoint(_ given: String) throws(FUSEError) -> String {
        func failure(_ path: String, _ what: String) -> FUSEError {
            let code = errno
            switch code {
            case ENOTCONN:
                return FUSEError(
                    code,
                    "mount point \(path) is a FUSE mount whose filesystem is gone; "
                        + "unmount it with 'fusermount3 -u \(path)'"
                )
            case ENOENT: return FUSEError(code, "mount point \(path) does not exist")
            default: return FUSEError(code > 0 ? code : EIO, "\(what) mount point \(path)")
            }
        }
        guard let resolved = realpath(given, nil) else { throw failure(given, "cannot use") }
        let path = String(cString: resolved)
        free(resolved)
        var info = stat()
        if stat(path, &info) != 0 { throw failure(path, "cannot use") }
        if info.st_mode & S_IFMT != S_IFDIR {
            throw FUSEError(ENOTDIR, "mount point \(path) is not a directory")
        }
        if !allowNonEmptyMountPoint {
            guard let directory = opendir(path) else { throw failure(path, "cannot read") }
            defer { closedir(directory) }
            while let item = readdir(directory) {
                let name = withUnsafeBytes(of: item.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." {
                    throw FUSEError(ENOTEMPTY, "mount point \(path) is not empty")
                }
            }
        }
        return path
    }
}

/// Wakes the session loop after `fuse_session_exit`: the loop notices the flag only once a
/// worker thread receives a request, so make one, a lookup of a name nobody uses, from a
/// detached thread (the lookup waits for its answer). Signals would wake it only when they
/// reach the right thread, and a retrieve notification works only for regular files.
private func wakeLoop(mountPoint: String) {
    let probe = mountPoint + "/.fuse-wake-" + String(UInt64.random(in: 1...UInt64.max), radix: 36)
    spawnThread(detached: true) {
        var info = stat()
        _ = stat(probe, &info)
    }
}

/// Watches for an exit flag set by a signal handler on another thread, and wakes the loop.
private final class Watcher: Sendable {
    private let channel: SessionChannel
    private let mountPoint: String
    private let stopped = Atomic<Bool>(false)

    init(channel: SessionChannel, mountPoint: String) {
        self.channel = channel
        self.mountPoint = mountPoint
    }

    func stop() { stopped.store(true, ordering: .releasing) }

    func watch() {
        var lastWake = 0
        var tick = 0
        while !stopped.load(ordering: .acquiring) {
            usleep(200_000)
            tick += 1
            guard let session = channel.session else { return }
            if fuse_session_exited(session.raw) != 0 && (lastWake == 0 || tick - lastWake >= 5) {
                wakeLoop(mountPoint: mountPoint)
                lastWake = tick
            }
        }
    }
}

/// Writes `kib` into the mount's `read_ahead_kb`, once the mount answers `stat`.
private func raiseReadahead(mountPoint: String, kib: Int, log: @Sendable (String) -> Void) {
    var info = stat()
    guard stat(mountPoint, &info) == 0 else {
        log("cannot raise readahead: stat \(mountPoint): \(String(cString: strerror(errno)))")
        return
    }
    // The kernel's device-number encoding, as glibc's major() and minor() decode it.
    let device = UInt64(info.st_dev)
    let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~0xfff)
    let minor = (device & 0xff) | ((device >> 12) & ~0xff)
    let path = "/sys/class/bdi/\(major):\(minor)/read_ahead_kb"
    let descriptor = open(path, O_WRONLY | O_CLOEXEC)
    guard descriptor >= 0 else {
        log("cannot raise readahead to \(kib) KiB: \(path): \(String(cString: strerror(errno)))")
        return
    }
    defer { close(descriptor) }
    let text = "\(kib)\n"
    let written = text.withCString { write(descriptor, $0, strlen($0)) }
    if written < 0 {
        log("cannot raise readahead to \(kib) KiB: \(path): \(String(cString: strerror(errno)))")
    }
}

/// What a helper thread runs; retained across `pthread_create`.
private final class ThreadBody: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// Starts a helper thread that ignores SIGINT, SIGTERM and SIGHUP, so those reach the thread
/// running the session loop. Returns the thread unless `detached` (or if it failed to start).
@discardableResult
private func spawnThread(detached: Bool, _ body: @escaping @Sendable () -> Void) -> pthread_t? {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var signals = sigset_t()
    var previous = sigset_t()
    sigemptyset(&signals)
    for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] { sigaddset(&signals, signal) }
    // The new thread inherits the mask in force at pthread_create.
    pthread_sigmask(SIG_BLOCK, &signals, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { context in
            Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, context)
    guard result == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        return nil
    }
    if detached {
        pthread_detach(thread)
        return nil
    }
    return thread
}
