import Backend
import Oracle
import Foundation
import Trace

/// Opens a trace file by its extension.
public enum TraceFile {
    public static func open(path: String) throws(TraceError) -> any TraceEventSource {
        try TextTraceSource(path: path)
    }

    /// Replays one file; unreadable or malformed files come back as a report with a trace error.
    public static func replay(path: String, variant: BackendVariant, options: ReplayOptions = ReplayOptions(),
                              onEvent: ((TraceEvent, [Violation]) -> Void)? = nil) -> ReplayReport {
        do {
            var source = try open(path: path)
            return TraceRunner.run(&source, variant: variant, options: options, onEvent: onEvent)
        } catch {
            var report = ReplayReport(file: path, backend: variant.name)
            report.traceError = error
            return report
        }
    }
}
