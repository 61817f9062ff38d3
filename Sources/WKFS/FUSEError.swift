import Glibc

/// An error of the FUSE edge: an errno value for the kernel, with a message for people.
///
/// Filesystem methods throw it to choose the errno a request fails with; any other error fails
/// the request with `EIO` unless ``FUSEFilesystem/errorNumber(for:operation:)`` maps it.
/// `FUSESession` throws it when mounting or running fails.
///
/// Two errors are equal when their codes are, so `catch FUSEError.noEntry` matches an `ENOENT`
/// whatever its message.
public struct FUSEError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The errno value (`ENOENT`, `EROFS`, ...), positive.
    public var code: Int32
    /// What went wrong and where, naming the file; `nil` for a bare errno.
    public var message: String?

    public init(_ code: Int32, _ message: String? = nil) {
        precondition(code > 0, "errno values are positive")
        self.code = code
        self.message = message
    }

    public static func == (lhs: FUSEError, rhs: FUSEError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// The system's text for ``code``, e.g. "No such file or directory".
    public var codeDescription: String { String(cString: strerror(code)) }

    public var description: String {
        if let message { "\(message): \(codeDescription)" } else { codeDescription }
    }

    public static let notPermitted = FUSEError(EPERM)
    public static let noEntry = FUSEError(ENOENT)
    public static let io = FUSEError(EIO)
    public static let badHandle = FUSEError(EBADF)
    public static let accessDenied = FUSEError(EACCES)
    public static let exists = FUSEError(EEXIST)
    public static let crossDevice = FUSEError(EXDEV)
    public static let notDirectory = FUSEError(ENOTDIR)
    public static let isDirectory = FUSEError(EISDIR)
    public static let invalid = FUSEError(EINVAL)
    public static let fileTooBig = FUSEError(EFBIG)
    public static let noSpace = FUSEError(ENOSPC)
    public static let readOnly = FUSEError(EROFS)
    public static let nameTooLong = FUSEError(ENAMETOOLONG)
    public static let notImplemented = FUSEError(ENOSYS)
    public static let notEmpty = FUSEError(ENOTEMPTY)
    public static let notSupported = FUSEError(EOPNOTSUPP)
    public static let notConnected = FUSEError(ENOTCONN)
}
