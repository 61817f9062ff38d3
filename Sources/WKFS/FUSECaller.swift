import Foundation
import Glibc

/// The process that made the request a libfuse worker thread is serving now: set around each
/// request (`serve` in FUSEOperations.swift), read by the filesystem where it matters who asks
/// (the text an editor read is the one its save is made from).
public enum FUSECaller {
    /// The thread-specific slot holding the calling thread's id (the kernel's pid of the caller).
    private static let slot: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Sets (or clears, nil) the caller of this worker thread's request.
    static func set(_ thread: Int32?) {
        pthread_setspecific(slot, thread.flatMap { $0 > 0 ? UnsafeRawPointer(bitPattern: Int($0)) : nil })
    }

    /// The calling process (its thread group, so that the threads of one program are one
    /// caller), or nil outside a request.
    public static var process: Int32? {
        guard let pointer = pthread_getspecific(slot) else { return nil }
        let thread = Int32(Int(bitPattern: pointer))
        return status(thread, "Tgid:") ?? thread
    }

    /// The parent of process `process` (nil when it is gone).
    public static func parent(_ process: Int32) -> Int32? {
        status(process, "PPid:").flatMap { $0 > 0 ? $0 : nil }
    }

    /// A number field of `/proc/ID/status`.
    private static func status(_ id: Int32, _ field: String) -> Int32? {
        guard let text = try? String(contentsOfFile: "/proc/\(id)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix(field) })
        else { return nil }
        return Int32(line.dropFirst(field.count).trimmingCharacters(in: .whitespaces))
    }
}
