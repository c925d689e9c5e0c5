import ArgumentParser
import Backend
import Foundation
import Harness
import Minimizer
import Oracle
import Trace

extension Replay {
    struct Minimize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "minimize",
            abstract: "Shrink a failing trace to a smallest one that fails with the same first check; print it.",
            discussion: """
                Removes events and simplifies arguments while the trace still fails under the backend \
                with the same first failing check, then prints the result as a commented text trace. \
                Under a backend other than its generation's defect-free one (fixed, g2013, g2018) it adds \
                `expect violation CHECK backend=NAME`, so the output is a regression trace: it passes the gate \
                under that backend exactly while the defect is still detected, and must be clean under every \
                other backend (and names each shipped form that has the backend's quirks — seed, linux-3.11, \
                linux-4.19, linux-5.10, linux-5.10.18 — too when it shows the same check; a later generation's \
                trace starts with `generations g2013` or `generations g2018`). A trace that crashes the model is minimized as \
                well: each candidate then runs in a forked child, and failing the same way means crashing.
                Exit status: 0 when the minimized trace is written; 1 when the trace does not fail under the \
                backend, or fails only for a missing expected violation (nothing to keep failing); 2 for usage \
                errors, an unreadable or malformed trace and an output file that cannot be written.
                """)

        @Argument(help: "A failing trace (text or pcap).")
        var file: String

        @OptionGroup var backendOption: BackendOption

        @Flag(inversion: .prefixedNo, help: "Add `expect violation CHECK backend=NAME` (never under fixed, g2013 or g2018).")
        var expect = true

        @Option(help: "Replays allowed; the smallest trace found by then is printed.")
        var maxReplays = 50_000

        @Option(name: .shortAndLong, help: "Write the trace to this file instead of standard output.")
        var output: String?

        func run() throws {
            let variant = backendOption.backend
            let kinds = try TraceFiles.readEvents(file)
            let minimizer = TraceMinimizer(variant: variant, maxReplays: maxReplays)
            let result: TraceMinimizer.Result
            do { result = try minimizer.minimize(kinds) } catch {
                throw Self.failure(error, file: file)
            }
            var check: CheckID?
            if case .violation(let found) = result.outcome { check = found }
            // The generation's defect-free form (fixed, g2013, g2018) and the shipped forms that have
            // every quirk of this backend (seed; linux-3.11; linux-4.19, linux-5.10, linux-5.10.18).
            let defectFree = BackendVariant(generation: variant.generation, quirks: [])
            let expecting = expect && variant != defectFree && check != nil
            var header: [TraceEventKind] = []
            if expecting, let check {
                // Expectations of a version-1 trace concern G2012; a later generation's are
                // scoped to it (trace-format.md §4.9) — before any is tried under a shipped form,
                // or a trace of version-1 events would not apply them there.
                if variant.generation != .g2012 { header.append(.generations([variant.generation.rawValue])) }
                header.append(.expect(.violation(check, backend: variant.name), vbd: 0))
                // Name a shipped form too when the trace shows the same check there
                // (traces/known-defects is gated under the shipped forms).
                for form in variant.generation.shippedForms where form.quirks.isSuperset(of: variant.quirks) {
                    let shipped = BackendVariant(generation: variant.generation, quirks: form.quirks)
                    guard shipped != variant else { continue }
                    let line = TraceEventKind.expect(.violation(check, backend: shipped.name), vbd: 0)
                    if TraceMinimizer(variant: shipped).isolatedOutcome(header + [line] + result.events) == .pass {
                        header.append(line)
                    }
                }
            }
            let body = header + result.events
            let eventLines = TextTracePrinter.render(body)

            // Where the violation stands in the printed text, and how the trace does under fixed.
            let comments = { (line: String, fixedNote: String) -> String in
                var text = "# minimized from \((self.file as NSString).lastPathComponent) by replay minimize: "
                    + "\(result.events.count) of \(result.originalCount) events, \(result.replays) replays"
                    + (result.complete ? "" : " (budget reached)") + "\n"
                if let violation = result.violation {
                    text += "# under \(variant.name) the first failing check is \(violation.check.rawValue), at line \(line):\n"
                    text += "#   expected \(Self.oneLine(violation.expected))\n"
                    text += "#   seen \(Self.oneLine(violation.seen))\n"
                } else {
                    text += "# under \(variant.name) replaying this trace crashes: \(result.outcome), a trap in the model\n"
                }
                text += "# \(fixedNote)\n"
                return text
            }
            let draft = comments("?", "?") + eventLines
            var line = "?"
            if let check {
                let underVariant = Self.replay(draft, variant: variant)
                line = underVariant.violations.first { $0.violation.check == check }
                    .map { TextReport.position($0.violation.position) } ?? "?"
            }
            var fixedNote = ""
            if variant != defectFree {
                let kinds = try TextTraceReader.parseAll(text: draft, file: "minimized").map(\.kind)
                let underFixed = TraceMinimizer(variant: defectFree).isolatedOutcome(kinds)
                fixedNote = underFixed == .pass
                    ? "under \(defectFree.name) this trace is clean"
                    : "under \(defectFree.name) this trace fails too (\(underFixed)): a defect of the defect-free backend, the fake or the oracle"
            } else {
                fixedNote = "the \(defectFree.name) backend fails it: a defect of the defect-free backend, the fake or the oracle"
            }
            let text = comments(line, fixedNote) + eventLines
            try Output.write(text, to: output)
        }

        /// A trace error is input the command cannot use (2); a trace with no
        /// failure to keep is the command's negative answer (1).
        static func failure(_ error: TraceMinimizer.Failure, file: String) -> ReplayFailure {
            switch error {
            case .traceError: .invalid("\(file): \(error.description)")
            case .passes, .onlyMissingExpectation: .failed("\(file): \(error.description)")
            }
        }

        static func replay(_ text: String, variant: BackendVariant) -> ReplayReport {
            return TraceRunner.replay(.text(text, name: "minimized"), variant: variant)
        }

        static func oneLine(_ text: String) -> String {
            text.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        }
    }
}
