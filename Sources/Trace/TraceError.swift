/// Where an event, or an error, sits in its trace.
public enum TracePosition: Hashable, Sendable, CustomStringConvertible {
    /// A text line (1-based) and the column (1-based, counted in Unicode
    /// scalars) of the token concerned. Line 0 means "the file as a whole".
    case line(Int, column: Int)
    /// A pcap packet, numbered as the pcap codec numbers them.
    case packet(Int)

    public var description: String {
        switch self {
        case let .line(line, _): "line \(line)"
        case let .packet(number): "packet \(number)"
        }
    }
}

/// A trace that cannot be read: names the file, the place and what was expected.
public struct TraceError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var position: TracePosition
    public var message: String

    public init(file: String, position: TracePosition, message: String) {
        self.file = file
        self.position = position
        self.message = message
    }

    /// The compiler-style form editors and CI logs can jump to.
    public var description: String {
        switch position {
        case let .line(line, column): "\(file):\(line):\(column): \(message)"
        case let .packet(number): "\(file): packet \(number): \(message)"
        }
    }
}
