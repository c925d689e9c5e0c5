import ArgumentParser
import Backend
import Foundation
import Harness
import Oracle
import Trace

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, junit
}

/// Parses `--backend` early so a typo is a usage error, not a failed run.
struct BackendOption: ParsableArguments {
    @Option(name: .long, help: "The backend: seed, fixed, or fixed+QUIRK[+QUIRK…].")
    var backend: String = "fixed"

    func variant() throws -> BackendVariant {
        do { return try BackendVariant(name: backend) } catch { throw ValidationError(error.description) }
    }
}

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

/// Replays files on several threads; results come back in file order.
enum ParallelReplay {
    static func run(files: [String], jobs: Int, failFast: Bool,
                    _ replay: @escaping @Sendable (String) -> ReplayReport) -> [ReplayReport] {
        let results = ResultSlots(count: files.count)
        let queue = DispatchQueue(label: "replay", attributes: .concurrent)
        let group = DispatchGroup()
        let semaphore = DispatchSemaphore(value: jobs)
        for (index, file) in files.enumerated() {
            semaphore.wait()
            if failFast && results.sawFailure { semaphore.signal(); break }
            group.enter()
            queue.async {
                let report = replay(file)
                results.store(report, at: index)
                semaphore.signal()
                group.leave()
            }
        }
        group.wait()
        return results.collected
    }
}

/// Thread-safe result array for the replay workers.
final class ResultSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [ReplayReport?]
    private var failed = false

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func store(_ report: ReplayReport, at index: Int) {
        lock.lock()
        defer { lock.unlock() }
        slots[index] = report
        if report.verdict != .pass { failed = true }
    }

    var sawFailure: Bool {
        lock.lock()
        defer { lock.unlock() }
        return failed
    }

    var collected: [ReplayReport] {
        lock.lock()
        defer { lock.unlock() }
        return slots.compactMap { $0 }
    }
}
