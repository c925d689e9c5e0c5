import ArgumentParser
import Backend
import Foundation
import Harness
import Oracle
import Trace

extension Replay {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay every trace under the paths (recursively, in path order) and report.")

        @Argument(help: "Trace files or directories.")
        var paths: [String] = ["traces"]

        @OptionGroup var backendOption: BackendOption

        @Option(help: "Report format: text, json or junit.")
        var format: OutputFormat = .text

        @Option(help: "Write the report to this file instead of standard output.")
        var output: String?

        @Option(help: "Traces replayed at once (default: the number of cores).")
        var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

        @Flag(help: "Stop at the first trace that fails.")
        var failFast = false

        @Flag(help: "Print every event with what the oracle found (runs one trace at a time).")
        var verbose = false

        @Flag(inversion: .prefixedNo, help: "Judge with the oracle (off: only run the backend and the expect lines).")
        var oracle = true

        func validate() throws {
            guard jobs >= 1 else { throw ValidationError("--jobs takes a number of at least 1") }
        }

        func run() throws {
            let variant = try backendOption.variant()
            let files: [String]
            do { files = try TraceFiles.collect(paths) } catch { throw ValidationError("\(error)") }
            guard !files.isEmpty else { throw ValidationError("no .trace files under \(paths.joined(separator: " "))") }

            let options = ReplayOptions(oracle: oracle)
            let started = Date()
            let reports = ParallelReplay.run(files: files, jobs: verbose ? 1 : jobs, failFast: failFast) { path in
                var events: [String] = []
                let report = TraceFile.replay(path: path, variant: variant, options: options,
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
            if let output {
                do { try rendered.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                    throw ValidationError("cannot write \(output): \(error.localizedDescription)")
                }
                if format != .text { print(TextReport.summaryLine(reports)) }
            } else {
                print(rendered, terminator: rendered.hasSuffix("\n") ? "" : "\n")
            }
            if reports.contains(where: { $0.verdict == .error }) { throw ExitCode(2) }
            if reports.contains(where: { $0.verdict != .pass }) { throw ExitCode(1) }
        }
    }
}
