/// Reads a text trace one event at a time: each `next()` reads lines up to
/// the next event, so a long trace is never split or parsed as a whole.
public struct TextTraceReader: Sendable {
    /// The version-1 header, which most traces start with.
    static let header = TraceFormat.header(version: 1)
    /// What a header may say, for messages.
    static let headers = TraceFormat.versions.map { "'\(TraceFormat.header(version: $0))'" }.joined(separator: " or ")

    private let file: String
    private var lines: LineSource
    private let parser: EventParser
    /// What the events read so far set up (the default `domid=` comes from it).
    public private(set) var state = TraceState()
    private var sawHeader = false
    /// Errors are final: a reader that failed keeps failing the same way
    /// rather than guessing where the trace might resume.
    private var failure: TraceError?
    /// The tokens of the line being read; one buffer for every line.
    private var tokens: [Token] = []

    public init(text: String, file: String) {
        self.file = file
        lines = LineSource(text: text)
        parser = EventParser(file: file)
    }

    /// Reads the whole file; an unreadable file or bytes that are not UTF-8 are trace errors.
    public static func open(path: String) throws(TraceError) -> TextTraceReader {
        let bytes: [UInt8]
        switch FileBytes.read(path: path) {
        case let .success(contents): bytes = contents
        case let .failure(problem):
            throw TraceError(file: path, position: .line(0, column: 0),
                             message: "cannot read the trace: \(problem.reason); expected a readable text file")
        }
        // The standard library's validation is the fast check; the
        // scalar-by-scalar walk runs only to place the error.
        if let text = String(validating: bytes, as: UTF8.self) { return TextTraceReader(text: text, file: path) }
        if let (line, column) = FileBytes.firstInvalidUTF8(in: bytes) {
            throw TraceError(file: path, position: .line(line, column: column),
                             message: "bytes that are not UTF-8; expected a UTF-8 text trace")
        }
        return TextTraceReader(text: String(decoding: bytes, as: UTF8.self), file: path)
    }

    /// The next event, or nil at the end of the trace.
    public mutating func next() throws(TraceError) -> TraceEvent? {
        if let failure { throw failure }
        do throws(TraceError) {
            return try readEvent()
        } catch {
            failure = error
            throw error
        }
    }

    private mutating func readEvent() throws(TraceError) -> TraceEvent? {
        while let line = lines.nextLine() {
            let number = lines.lineNumber
            if sawHeader, let (kind, column) = lines.withBytes({
                QuickEventLine.parse($0, line, latestDomid: state.latestDomid)
            }) ?? nil {
                state.apply(kind)
                return TraceEvent(kind: kind, position: .line(number, column: column))
            }
            // Everything the quick reader leaves: other events, blank lines, errors.
            lines.tokens(ofLine: line, into: &tokens)
            if tokens.isEmpty { continue }   // blank or comment-only
            if sawHeader {
                let event = try parser.parse(tokens, line: number, after: state)
                state.apply(event.kind)
                return event
            }
            state = TraceState(formatVersion: try checkHeader(tokens, line: number))
            sawHeader = true
        }
        if !sawHeader {
            throw TraceError(file: file, position: .line(max(lines.lineNumber, 1), column: 1),
                             message: "the trace ends before its header; expected \(Self.headers) as the first line")
        }
        return nil
    }

    /// The version the header declares.
    private func checkHeader(_ tokens: [Token], line: Int) throws(TraceError) -> Int {
        func error(_ token: Token, _ message: String) -> TraceError {
            TraceError(file: file, position: .line(line, column: token.column), message: message)
        }
        guard tokens[0].text == "xenblk-trace" else {
            throw error(tokens[0], "found \(quoted(tokens[0].text)) where the header belongs; expected \(Self.headers) as the first line")
        }
        guard tokens.count > 1 else {
            throw error(tokens[0], "the header has no version; expected \(Self.headers)")
        }
        // Exactly the digits of a known version: `01` or `2.0` is refused, never guessed.
        guard let version = TraceFormat.versions.first(where: { tokens[1].text == String($0) }) else {
            throw error(tokens[1], "unsupported trace version \(quoted(tokens[1].text)); expected \(Self.headers)")
        }
        guard tokens.count == 2 else {
            throw error(tokens[2], "unexpected \(quoted(tokens[2].text)) after the header; expected '\(TraceFormat.header(version: version))' alone")
        }
        return version
    }

    /// Every event of a text, for callers that want them all at once.
    public static func parseAll(text: String, file: String) throws(TraceError) -> [TraceEvent] {
        var reader = TextTraceReader(text: text, file: file)
        var events: [TraceEvent] = []
        while let event = try reader.next() { events.append(event) }
        return events
    }
}
