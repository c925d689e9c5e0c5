import ArgumentParser
import Backend
import Foundation
import Harness
import Oracle

extension Replay {
    struct Matrix: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "matrix",
            abstract: "Replay the suite under each generation's defect-free backend (fixed, g2013) and under it with each of the generation's quirks; show which traces and checks detect each.",
            discussion: """
                Exit status: 0 when every defect-free backend passes every trace and every quirk is detected; 1 when \
                one fails a trace or a quirk goes undetected; 2 for usage errors, a path that does not exist or holds no \
                trace, and an unreadable or malformed trace (named on standard error).
                """)

        @Argument(help: "Trace files or directories.")
        var paths: [String] = ["traces"]

        @OptionGroup var jobsOption: JobsOption

        func run() throws {
            let files = try TraceFiles.collect(paths)
            let variants = BackendVariant.matrix
            var rows: [[String]] = [["backend", "result", "detected by", "checks"]]
            var ok = true
            for variant in variants {
                let reports = ParallelReplay.run(files: files, jobs: jobsOption.jobs, failFast: false) { path in
                    TraceRunner.replay(.file(path: path), variant: variant)
                }
                if let unreadable = ReplayFailure.unreadableTraces(in: reports) { throw unreadable }
                let failing = reports.filter { $0.verdict != .pass }
                // A trace detects a quirk when it fails under it, or when it
                // expects violations under this very backend and sees them.
                let exposing = reports.filter { $0.verdict == .pass && !$0.expectedChecks.isEmpty && !$0.violations.isEmpty }
                let detecting = variant.quirks.isEmpty ? failing : failing + exposing
                let checks = Set(failing.flatMap { $0.failingViolations.map(\.violation.check.rawValue)
                    + $0.missingExpectedChecks.map { "missing:" + $0.rawValue } }
                    + exposing.flatMap { $0.violations.map(\.violation.check.rawValue) }).sorted()
                let names = detecting.map { ($0.file as NSString).lastPathComponent }
                let shown = names.prefix(4).joined(separator: ", ") + (names.count > 4 ? " +\(names.count - 4)" : "")
                if variant.quirks.isEmpty {
                    let clean = failing.isEmpty
                    ok = ok && clean
                    rows.append([variant.name, clean ? "clean" : "FAILS", shown, checks.joined(separator: " ")])
                } else {
                    let detected = !detecting.isEmpty
                    ok = ok && detected
                    rows.append([variant.name, detected ? "detected" : "UNDETECTED", shown, checks.joined(separator: " ")])
                }
            }
            print(Table.render(rows))
            let detected = rows.filter { $0[1] == "detected" }.count
            let quirkCount = variants.filter { !$0.quirks.isEmpty }.count
            let fixedForms = zip(variants, rows.dropFirst()).filter { $0.0.quirks.isEmpty }
                .map { "\($0.0.name) \($0.1[1])" }.joined(separator: ", ")
            print("\(detected) of \(quirkCount) quirks detected; \(fixedForms)")
            if !ok { throw ReplayFailure.reportedFailure }
        }
    }
}
