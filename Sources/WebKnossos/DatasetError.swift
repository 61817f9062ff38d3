/// An error of the dataset layer, naming the file, layer or argument concerned and the reason.
public struct DatasetError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case notFound
        case alreadyExists
        case invalidProperties
        case invalidArgument
        case unsupported
        case io
    }

    public var kind: Kind
    /// The file, directory or argument concerned.
    public var subject: String
    public var reason: String

    public init(_ kind: Kind, _ subject: String, _ reason: String) {
        self.kind = kind
        self.subject = subject
        self.reason = reason
    }

    public var description: String { subject.isEmpty ? reason : "\(subject): \(reason)" }
}
