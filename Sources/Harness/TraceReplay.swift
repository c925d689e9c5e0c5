import Backend
import Oracle
import Trace

/// Where a trace to replay comes from.
public enum TraceInput: Sendable {
    /// A trace file: pcap or pcapng by its extension, else text.
    case file(path: String)
    /// Trace text in memory; `name` stands for the file in reports.
    case text(String, name: String)
    /// Events in memory (generated, decoded, minimised); `name` stands for the file.
    case events([TraceEventKind], name: String)
}

public struct ReplayOptions: Sendable {
    public var oracle: Bool
    public init(oracle: Bool = true) { self.oracle = oracle }
}

extension TraceRunner {
    /// Replays one trace under one backend and reports: the one way every
    /// command, test and fuzz target runs a trace. A file that cannot be read
    /// or parsed comes back as a report with a trace error.
    public static func replay(_ input: TraceInput, variant: BackendVariant, options: ReplayOptions = ReplayOptions(),
                              onEvent: ((TraceEvent, [Violation]) -> Void)? = nil) -> ReplayReport {
        switch input {
        case .file(let path):
            do {
                var source = try TraceFile.open(path: path)
                return run(&source, variant: variant, options: options, onEvent: onEvent)
            } catch {
                var report = ReplayReport(file: path, backend: variant.name)
                report.traceError = error
                return report
            }
        case let .text(text, name):
            var source = TextTraceSource(text: text, file: name)
            return run(&source, variant: variant, options: options, onEvent: onEvent)
        case let .events(kinds, name):
            var source = EventListSource(file: name, kinds: kinds)
            return run(&source, variant: variant, options: options, onEvent: onEvent)
        }
    }
}
