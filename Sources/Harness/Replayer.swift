import Backend
import Oracle
import Foundation
import Trace
import TracePcap

/// The pcap reader streams packet by packet, like the text reader streams lines.
extension PcapTraceReader: TraceEventSource {}

/// Opens a trace file by its extension.
public enum TraceFile {
    /// Whether the file is in the pcap encoding (`.pcap`, `.pcapng`), else text.
    public static func isPcap(path: String) -> Bool {
        let lowered = path.lowercased()
        return lowered.hasSuffix(".pcap") || lowered.hasSuffix(".pcapng")
    }

    public static func open(path: String) throws(TraceError) -> any TraceEventSource {
        if isPcap(path: path) { return try PcapTraceReader(path: path) }
        return try TextTraceSource(path: path)
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
