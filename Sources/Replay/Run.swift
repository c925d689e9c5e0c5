import ArgumentParser
import Backend
import Foundation
import Harness
import Oracle
import Trace

extension Replay {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "Replay every trace under the paths (recursively, in path order) and report.",
            discussion: """
                The text report ends with exactly `N passed, M failed`.
                Exit status: 0 when every trace passes; 1 when one fails; 2 for usage errors, a path that does \
                not exist or holds no trace, an unreadable or malformed trace (also named on standard error, \
                with its line or packet) and an --output that cannot be written.
                """)

        @Argument(help: "Trace files or directories.")
        var paths: [String] = ["traces"]

        @OptionGroup var backendOption: BackendOption

        @Option(help: "Report format.")
        var format: OutputFormat = .text

        @Option(help: "Write the report to this file instead of standard output.")
        var output: String?

        @OptionGroup var jobsOption: JobsOption

        @Flag(help: "Stop at the first trace that fails.")
        var failFast = false

        @Flag(help: "Print every event with what the oracle found (runs one trace at a time).")
        var verbose = false

        @Flag(inversion: .prefixedNo, help: "Judge with the oracle (off: only run the backend and the expect lines).")
        var oracle = true

        func run() throws {
            let variant = backendOption.backend
            let files = try TraceFiles.collect(paths)

            let options = ReplayOptions(oracle: oracle)
            let started = Date()
            let reports = ParallelReplay.run(files: files, jobs: verbose ? 1 : jobsOption.jobs, failFast: failFast) { path in
                var events: [String] = []
                let report = TraceRunner.replay(.file(path: path), variant: variant, options: options,
                                              onEvent: verbose ? { event, found in
                                                  events.append(VerboseLine.render(event, found))
                                              } : nil)
                if verbose { print("== \(path)\n" + events.joined(separator: "\n")) }
                return report
            }
            let elapsed = Date().timeIntervalSince(started)
            let rendered: String
            switch format {
            case .text: rendered = TextReport.render(reports, elapsed: elapsed)
            case .json: rendered = JSONReport.render(reports)
            case .junit: rendered = JUnitReport.render(reports, elapsed: elapsed)
            }
            try Output.write(rendered, to: output)
            // A machine-readable report in a file still leaves the count on the terminal.
            if output != nil && format != .text { print(TextReport.summaryLine(reports)) }
            try Self.verdict(reports)
        }

        /// Exit 2 when a trace could not be read (named on standard error
        /// too, since the report may be JSON or in a file), else 1 when one failed.
        private static func verdict(_ reports: [ReplayReport]) throws(ReplayFailure) {
            if let unreadable = ReplayFailure.unreadableTraces(in: reports) { throw unreadable }
            if reports.contains(where: { $0.verdict != .pass }) { throw .reportedFailure }
        }
    }
}
