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
        let quick = text.utf8.withContiguousStorageIfAvailable {
            QuickEventLine.parse($0, 0..<$0.count, latestDomid: state.latestDomid)
        }
        if let (kind, column) = quick ?? nil { return TraceEvent(kind: kind, position: .line(line, column: column)) }
        let tokens = LineSource.tokens(of: text)
        guard !tokens.isEmpty else { return nil }
        return try parser.parse(tokens, line: line, after: state)
    }

    /// The event of a line given as bytes, when it is one of the common,
    /// plainly well-formed lines (see `QuickEventLine`); nil means "call
    /// `parse(_:line:after:)`", which reads the line or says what is wrong.
    /// The bytes must not contain a line break.
    public func parseQuickly(_ bytes: UnsafeBufferPointer<UInt8>, after state: TraceState) -> TraceEventKind? {
        // The event alone: `parse(…)?.kind` copied it out of an optional
        // (event, column) pair and destroyed the pair through the runtime.
        var column = 0
        return QuickEventLine.kind(bytes, 0..<bytes.count, latestDomid: state.latestDomid, column: &column)
    }
}
