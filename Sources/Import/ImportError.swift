/// Why an import stopped: one line naming the file and, where there is one,
/// the line of the input (`FILE:LINE: MESSAGE`; line 0 is the file as a whole).
public struct ImportError: Error, Equatable, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let message: String

    public init(file: String, line: Int, _ message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { "\(file):\(line): \(message)" }
}

/// A parser's complaint about one line, before it knows the file and line.
struct LineProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
