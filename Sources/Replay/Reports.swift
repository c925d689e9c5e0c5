import Backend
import Foundation
import Harness
import Oracle
import Recording
import Trace

/// The human report: a line per trace, then each failure's details, then the count.
enum TextReport {
    static func render(_ reports: [ReplayReport], elapsed: TimeInterval) -> String {
        var lines: [String] = []
        for report in reports {
            let word: String
            switch report.verdict {
            case .pass: word = "PASS"
            case .fail: word = "FAIL"
            case .error: word = "ERROR"
            }
            var detail = "\(report.statistics.events) events, \(report.statistics.requests) requests"
            if !report.expectedChecks.isEmpty {
                detail += ", expects " + report.expectedChecks.map(\.rawValue).sorted().joined(separator: " ")
            }
            lines.append("\(word) \(report.file) [\(report.backend)] (\(detail))")
        }
        let failures = reports.filter { $0.verdict != .pass }
        if !failures.isEmpty { lines.append("") }
        for report in failures {
            lines.append(contentsOf: failureLines(report))
        }
        let warnings = reports.flatMap(\.warnings)
        if !warnings.isEmpty { lines.append("") }
        for warning in warnings { lines.append("\(warning.description) (warning)") }
        var total = ReplayStatistics()
        for report in reports { total.add(report.statistics) }
        lines.append("")
        lines.append(statisticsLine(total, elapsed: elapsed))
        lines.append(summaryLine(reports))
        return lines.joined(separator: "\n") + "\n"
    }

    static func failureLines(_ report: ReplayReport) -> [String] {
        if let error = report.traceError { return ["\(error.description)"] }
        var lines: [String] = []
        for missing in report.missingExpectedChecks {
            lines.append("\(report.file): expected violation '\(missing.rawValue)' under \(report.backend) was not observed")
        }
        let failing = report.failingViolations
        for reported in failing.prefix(20) {
            let v = reported.violation
            lines.append("\(report.file):\(position(v.position)): \(v.check.rawValue) [\(report.backend)]: expected \(v.expected); seen \(v.seen)")
        }
        if failing.count > 20 { lines.append("\(report.file): … \(failing.count - 20) more violation(s)") }
        if report.violationCount > report.violations.count {
            lines.append("\(report.file): \(report.violationCount) violations in all (the first \(report.violations.count) kept)")
        }
        if report.panicked { lines.append("\(report.file): the backend panicked; the rest of the trace was not replayed") }
        return lines
    }

    static func position(_ position: TracePosition) -> String {
        switch position {
        case let .line(line, _): "\(line)"
        case let .packet(number): "packet \(number)"
        }
    }

    static func statisticsLine(_ total: ReplayStatistics, elapsed: TimeInterval) -> String {
        var text = "\(total.requests) requests, \(total.segments) segments: \(total.mapOps) map ops, \(total.unmapOps) unmap ops"
        if let oracle = total.oracle {
            text += ", \(oracle.persistentHits) persistent hits, \(oracle.overflowed) over the limit"
        }
        return text + String(format: " in %.2f s", elapsed)
    }

    /// The gate's last line, exactly `N passed, M failed`.
    static func summaryLine(_ reports: [ReplayReport]) -> String {
        let passed = reports.filter { $0.verdict == .pass }.count
        return "\(passed) passed, \(reports.count - passed) failed"
    }
}

/// A machine-readable report for dashboards and scripts.
enum JSONReport {
    static func render(_ reports: [ReplayReport]) -> String {
        let objects: [[String: Any]] = reports.map { report in
            var object: [String: Any] = [
                "file": report.file,
                "backend": report.backend,
                "verdict": "\(report.verdict)",
                "events": report.statistics.events,
                "requests": report.statistics.requests,
                "mapOps": report.statistics.mapOps,
                "unmapOps": report.statistics.unmapOps,
                "expectedViolations": report.expectedChecks.map(\.rawValue).sorted(),
                "violations": report.violations.map { reported in
                    [
                        "check": reported.violation.check.rawValue,
                        "position": reported.violation.position.description,
                        "expected": reported.violation.expected,
                        "seen": reported.violation.seen,
                    ]
                },
            ]
            if let error = report.traceError { object["error"] = error.description }
            if !report.warnings.isEmpty { object["warnings"] = report.warnings.map(\.description) }
            return object
        }
        guard let data = try? JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys]) else {
            return "[]"
        }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// JUnit XML, which every CI system can show.
enum JUnitReport {
    static func render(_ reports: [ReplayReport], elapsed: TimeInterval) -> String {
        let failures = reports.filter { $0.verdict == .fail }.count
        let errors = reports.filter { $0.verdict == .error }.count
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        xml += "<testsuite name=\"replay\" tests=\"\(reports.count)\" failures=\"\(failures)\" errors=\"\(errors)\" time=\"\(String(format: "%.3f", elapsed))\">\n"
        for report in reports {
            xml += "  <testcase classname=\"\(escape(report.backend))\" name=\"\(escape(report.file))\">\n"
            let details = TextReport.failureLines(report).joined(separator: "\n")
            switch report.verdict {
            case .pass: break
            case .fail:
                xml += "    <failure message=\"\(escape(report.failingViolations.first.map { $0.violation.check.rawValue } ?? "expected violation missing"))\">\(escape(details))</failure>\n"
            case .error:
                xml += "    <error message=\"malformed trace\">\(escape(details))</error>\n"
            }
            xml += "  </testcase>\n"
        }
        return xml + "</testsuite>\n"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

/// `--verbose`: each event in canonical text with what the oracle found.
enum VerboseLine {
    static func render(_ event: TraceEvent, _ found: [Violation]) -> String {
        var printer = TextTracePrinter()
        var line = "\(TextReport.position(event.position)): \(printer.line(for: event.kind))"
        if found.isEmpty { line += "  ok" }
        for violation in found {
            line += "\n    \(violation.check.rawValue): expected \(violation.expected); seen \(violation.seen)"
        }
        return line
    }
}

enum RecordingReport {
    /// The oracle's verdict on a recorded run, as the `record` and `import`
    /// summaries print it: one line, then each kept violation with its place.
    static func oracleLines(label: String, variant: BackendVariant, file: String, count: Int, panicked: Bool,
                            kept: [Violation]) -> [String] {
        if count == 0 && !panicked { return ["  \(label): no violation under \(variant.name)"] }
        return ["  \(label): \(count) violation(s)\(panicked ? ", the backend panicked" : "")"]
            + kept.map { "    \(file): \($0.position): \($0.check.rawValue): expected \($0.expected); seen \($0.seen)" }
    }

    static func render(_ summary: RecordingSummary) -> String {
        let w = summary.workload
        let s = summary.statistics
        var lines: [String] = []
        let f = summary.frontend
        let reconnect = w.reconnectEvery.map { ", reconnect every \($0)" } ?? ""
        lines.append("recorded \(summary.file): \(w.frontend) frontend, seed \(w.seed), \(w.protocolName), queue depth \(w.queueDepth)\(reconnect)")
        lines.append("  \(summary.packets) packets: \(s.requests) requests, \(s.segments) segments, \(f.responses) responses (\(f.failedResponses) not okay), \(f.connects) connect(s)")
        let hits = s.oracle.map { "\($0.persistentHits) persistent hits" } ?? "persistent hits not counted (--no-oracle)"
        lines.append("  \(s.mapOps) map ops, \(s.unmapOps) unmap ops (\(s.unmapHypercalls) unmap hypercalls), \(hits)")
        lines.append("  frontend: \(f.grants) grants, \(f.revokes) revokes, pool peak \(f.poolPeak), in flight peak \(f.depthPeak)")
        if s.oracle == nil {
            lines.append("  oracle: off")
        } else {
            lines += oracleLines(label: "oracle", variant: .fixed, file: summary.file, count: summary.violationCount,
                                 panicked: summary.panicked, kept: summary.violations)
        }
        return lines.joined(separator: "\n")
    }
}
