/// Reads events from single lines of canonical-or-not text that do not come
/// from a text file: the control packets of the pcap encoding carry one event
/// line each. Like the text reader it reads a line after what the trace has
/// set up so far (`domid=` defaults to the latest connect's), which the
/// caller keeps as a `TraceState`.
public struct TextEventLineParser: Sendable {
    /// The header line a trace starts with, `xenblk-trace 1`.
    public static let header = TextTraceReader.header

    private let parser: EventParser

    public init(file: String) {
        parser = EventParser(file: file)
    }

    /// The event of one line, or nil when it holds nothing but blanks or a
    /// comment. Errors and the event are placed at `line` (columns count in
    /// Unicode scalars from 1). The line must not contain a line break.
    public func parse(_ text: String, line: Int = 1, after state: TraceState) throws(TraceError) -> TraceEvent? {
        let tokens = LineSource.tokens(of: text)
        guard !tokens.isEmpty else { return nil }
        return try parser.parse(tokens, line: line, after: state)
    }
}
