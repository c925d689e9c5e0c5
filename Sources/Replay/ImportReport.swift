import Foundation
import Harness
import Import
import Recording

/// The `import` summary: the trace, what became of its records, and the two
/// frontends side by side on the same records.
enum ImportReport {
    static func render(_ summary: ImportSummary) -> String {
        let o = summary.options
        let w = summary.written
        var lines: [String] = []
        let depth: String
        switch o.effectiveQueueDepth {
        case let .fixed(n): depth = "queue depth \(n)"
        case .trace: depth = "queue depth from the trace's completions"
        }
        let action = o.format == .blkparse ? " (\(o.blkparseAction.rawValue) events)" : ""
        let gzip = summary.isCompressed ? ", gzip" : ""
        lines.append("imported \(summary.file) (\(o.format.rawValue)\(action)\(gzip)) to \(summary.out): \(w.frontend) frontend, \(o.protocolName), \(depth), backend \(o.variant.name)")
        let devices = summary.survey.devices.enumerated().map { vbd, device in
            "vbd \(vbd) = \(device) (\(summary.survey.diskSectors(vbd: vbd, options: o)) sectors\(summary.survey.trims[vbd] ? ", discard" : ""))"
        }
        lines.append("  devices: " + devices.prefix(8).joined(separator: ", ") + (devices.count > 8 ? ", … \(devices.count) in all" : ""))
        lines.append("  lines: \(w.lines); records: \(w.records) read, \(w.converted) converted, \(w.records - w.converted) skipped")
        if !w.skipped.isEmpty {
            let reasons = w.skipped.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key.rawValue)" }
            lines.append("  skipped lines: " + reasons.joined(separator: ", "))
        }
        lines.append("  sectors: \(w.widened) widened to whole sectors, \(w.narrowed) trims narrowed, \(w.clippedTrims) trims cut to \(o.maxTrimBytes >> 20) MiB")
        lines.append("  ring requests: \(w.requests) (\(w.reads) read, \(w.writes) write, \(w.flushes) flush, \(w.discards) discard), \(w.segments) segments, \(w.splits) splits, \(w.indirect) indirect, \(w.earlyCompletions) completed early (ring full), \(w.completedAtEnd) at the end of the trace")
        lines.append("  trace time: \(w.tickedMilliseconds) ms in ticks; \(w.packets) packets written")
        let p = summary.persistent
        let l = summary.legacy
        func row(_ name: String, _ value: (ImportTally) -> String) -> [String] { [name, value(p), value(l)] }
        let rows: [[String]] = [
            ["", "persistent", "legacy"],
            row("persistent hits") { $0.outcome.statistics.oracle.map { "\($0.persistentHits)" } ?? "-" },
            row("map ops") { "\($0.outcome.statistics.mapOps)" },
            row("map hypercalls") { "\($0.outcome.statistics.mapHypercalls)" },
            row("unmap ops") { "\($0.outcome.statistics.unmapOps)" },
            row("unmap hypercalls") { "\($0.outcome.statistics.unmapHypercalls)" },
            row("grants / revokes") { "\($0.frontendTally.grants) / \($0.frontendTally.revokes)" },
            row("pool peak") { "\($0.frontendTally.poolPeak)" },
            row("in flight peak") { "\($0.frontendTally.depthPeak)" },
            row("responses not okay") { "\($0.frontendTally.failedResponses)" },
        ]
        let widths = (0..<3).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for cells in rows {
            let padded = cells.enumerated().map { column, cell in
                column == 0 ? cell.padding(toLength: widths[0], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[column] - cell.count) + cell
            }
            lines.append("  " + padded.joined(separator: "  "))
        }
        if !o.oracle {
            lines.append("  oracle: off")
        } else {
            for (tally, file) in [(summary.written, summary.out), (summary.compared, "\(summary.out) (\(summary.compared.frontend), in memory)")] {
                let outcome = tally.outcome
                lines += RecordingReport.oracleLines(label: "oracle (\(tally.frontend))", variant: o.variant, file: file,
                                                     count: outcome.count, panicked: outcome.panicked, kept: outcome.kept)
            }
        }
        return lines.joined(separator: "\n")
    }

    /// A progress line on a terminal's standard error, rewritten in place
    /// (an empty text clears it).
    static func progress(_ text: String) {
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
    }
}
