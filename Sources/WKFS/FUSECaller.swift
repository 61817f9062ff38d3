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
        guard let status = try? String(contentsOfFile: "/proc/\(thread)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Tgid:") }),
            let group = Int32(line.dropFirst(5).trimmingCharacters(in: .whitespaces))
        else { return thread }
        return group
    }
}
