import Formats

/// An error of the dataset layer, naming the file, layer or argument concerned and the reason.
public struct DatasetError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case notFound
        case alreadyExists
        case invalidProperties
        case invalidArgument
        case unsupported
        case io
        /// Another writer changed the same thing meanwhile; doing it again from the new state works.
        case conflict
    }

    public var kind: Kind
    /// The file, directory or argument concerned.
    public var subject: String
    public var reason: String
    /// The lower layer's error that caused this one (its errno decides the mount's answer).
    public var cause: (any Error & Sendable)?

    public init(_ kind: Kind, _ subject: String, _ reason: String, cause: (any Error & Sendable)? = nil) {
        self.kind = kind
        self.subject = subject
        self.reason = reason
        self.cause = cause
    }

    public var description: String {
        let text = subject.isEmpty ? reason : "\(subject): \(reason)"
        guard let cause else { return text }
        // A format error names its own file; keep its words, not a second copy of the path.
        if let wkw = cause as? FormatError { return "\(text): \(wkw.path == subject ? wkw.reason : wkw.description)" }
        return "\(text): \(cause)"
    }
}
