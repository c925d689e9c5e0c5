/// Reads events from single lines of canonical-or-not text that do not come
/// from a text file: the control packets of the pcap encoding carry one event
/// line each. Stateful like the text reader (`domid=` defaults to the latest
/// connect's), so one parser reads all the lines of one trace, in order.
public struct TextEventLineParser: Sendable {
    /// The header line a trace starts with, `xenblk-trace 1`.
    public static let header = TextTraceReader.header

    private var parser: EventParser

    public init(file: String) {
        parser = EventParser(file: file)
    }

    /// The event of one line, or nil when it holds nothing but blanks or a
    /// comment. Errors and the event are placed at `line` (columns count in
    /// Unicode scalars from 1). The line must not contain a line break.
    public mutating func parse(_ text: String, line: Int = 1) throws(TraceError) -> TraceEvent? {
        let tokens = LineSource.tokens(of: Substring(text).unicodeScalars)
        guard !tokens.isEmpty else { return nil }
        return try parser.parse(tokens, line: line)
    }
}
