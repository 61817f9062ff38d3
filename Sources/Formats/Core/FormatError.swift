#if canImport(Glibc)
    import Glibc
#endif

/// An error of the format layer: what went wrong, with the file it concerns.
///
/// Bad input (a corrupt file, an out-of-range region) throws this; impossible states trap.
public struct FormatError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The file system refused an operation; `errno` is the C error number.
        case io(errno: Int32)
        /// A file's bytes do not follow its format (WKW, Zarr3).
        case corrupt
        /// The caller asked for something the format cannot do (bad lengths, bad region).
        case invalidArgument
        /// A file or directory that must exist does not.
        case notFound
        /// A file or directory that must not exist does.
        case alreadyExists
        /// A file changed while it was read (another writer replaced or patched it).
        case changed
    }

    public var kind: Kind
    /// The file or directory concerned ("" when none).
    public var path: String
    public var reason: String

    public init(_ kind: Kind, path: String, _ reason: String) {
        self.kind = kind
        self.path = path
        self.reason = reason
    }

    public var description: String {
        path.isEmpty ? reason : "\(path): \(reason)"
    }
}

extension FormatError {
    /// `body`'s result, or nil with its error added to `problems`: for walks that report every
    /// broken entry they meet, not only the first.
    static func collect<T>(_ problems: inout [FormatError], path: String, _ body: () throws -> T) -> T? {
        do {
            return try body()
        } catch {
            problems.append(error as? FormatError ?? FormatError(.io(errno: EIO), path: path, "\(error)"))
            return nil
        }
    }
}
