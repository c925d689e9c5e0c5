import ArgumentParser
import Backend
import Foundation
import FuzzSupport
import Harness
import Recording
import Trace

extension Replay {
    /// The benchmark of record for the harness's speed: the workload of
    /// record replayed with the oracle off (the baseline) and on, the fuzz
    /// target's entry point run in-process over its corpus, and reading the
    /// workload as pcap and as text. Ratios are against the baseline of the
    /// same run, so the numbers compare across machines.
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench",
            abstract: "Measure replay, fuzz-entry and reading throughput on the workload of record (build with -c release).",
            discussion: """
                Records a seeded workload against the fixed backend (by default the workload of record: persistent \
                frontend, 100000 requests of 11 segments, queue depth 32, seed 3), writes it as pcap and as text, \
                then times replaying it with the oracle off (the baseline) and on, running the FuzzReplay entry \
                point in-process over --fuzz-corpus (inputs in name order, cycled to --fuzz-executions), and reading \
                each encoding. Each figure is the median of --repeat runs; "x baseline" is its time over the \
                baseline's (the oracle-on row is the oracle's overhead).
                Exit status: 0; 1 when a replay of the workload or a corpus input fails under fixed; 2 for usage \
                errors and workload files that cannot be written or read back.
                """)

        @Option(help: "Requests in the workload (shrink for a quick run).")
        var requests = 100_000

        @Option(help: "The workload's seed.")
        var seed: UInt64 = 3

        @Option(help: "Segments per request: N, or A-B with A <= B (within 1-11).")
        var segments = SegmentRange(11...11)

        @Option(help: "Requests in flight at once (1…32).")
        var queueDepth = 32

        @Option(help: "The frontend.")
        var frontend: Workload.Frontend = .persistent

        @Option(help: "Runs per figure.")
        var `repeat` = 3

        @Option(help: "The FuzzReplay corpus run in-process (skipped when the folder does not exist).")
        var fuzzCorpus = "corpus/FuzzReplay"

        @Option(help: "Executions of the fuzz entry point per run.")
        var fuzzExecutions = 2_000

        @Option(help: "Where to put the workload files (default: a temporary folder).")
        var directory: String?

        @Option(help: "Measure only these (repeatable); without the replay, times are not compared to a baseline.")
        var only: [Part] = []

        enum Part: String, ExpressibleByArgument, CaseIterable {
            case replay, fuzz, read
        }

        private func measures(_ part: Part) -> Bool { only.isEmpty || only.contains(part) }

        var workload: Workload {
            Workload(seed: seed, requests: requests, frontend: frontend, segments: segments.range, queueDepth: queueDepth)
        }

        func validate() throws {
            if let problem = workload.problems.first { throw ValidationError(problem) }
            guard `repeat` >= 1 else { throw ValidationError("--repeat takes a number of at least 1") }
            guard fuzzExecutions >= 1 else { throw ValidationError("--fuzz-executions takes a number of at least 1") }
        }

        func run() throws {
            let folder = directory ?? NSTemporaryDirectory() + "xenblk-bench-\(ProcessInfo.processInfo.processIdentifier)"
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
                throw ReplayFailure.cannotWrite(folder, because: error.localizedDescription)
            }
            let pcap = folder + "/workload.pcap"
            let text = folder + "/workload.trace"
            print("workload: record --frontend \(frontend) --requests \(requests) --segments \(segments) "
                + "--queue-depth \(queueDepth) --seed \(seed); median of \(`repeat`) runs")
            let summary: RecordingSummary
            do { summary = try WorkloadRecorder.record(workload, to: pcap, oracle: false) } catch {
                throw ReplayFailure.invalid(error.description)
            }
            do { _ = try TraceConversion.convert(input: pcap, output: text) } catch {
                throw ReplayFailure.invalid(error.description)
            }

            let baseline = measures(.replay) ? try median { try Self.replay(pcap, oracle: false) } : nil
            let judged = measures(.replay) ? try median { try Self.replay(pcap, oracle: true) } : nil
            let fuzzInputs = measures(.fuzz) ? try FuzzCorpus.load(fuzzCorpus) : nil
            let fuzz = try fuzzInputs.map { inputs in try median { try FuzzCorpus.run(inputs, executions: fuzzExecutions) } }
            let readPcap = measures(.read) ? try median { try Self.readAll(pcap) } : nil
            let readText = measures(.read) ? try median { try Self.readAll(text) } : nil

            let events = Double(summary.packets)
            let count = Double(requests)
            var rows = [["measure", "seconds", "rate", "x baseline"]]
            func row(_ name: String, _ seconds: Double?, _ per: Double, _ unit: String, compared: Bool = true) {
                guard let seconds else { return }
                rows.append([name, String(format: "%.3f", seconds), String(format: "%.0f %@/s", per / seconds, unit),
                             compared ? baseline.map { String(format: "%.2fx", seconds / $0) } ?? "-" : "-"])
            }
            row("replay pcap, oracle off (baseline)", baseline, count, "requests")
            row("replay pcap, oracle on", judged, count, "requests")
            row("FuzzReplay in-process (\(fuzzInputs?.count ?? 0) inputs)", fuzz, Double(fuzzExecutions), "exec",
                compared: false)
            row("read pcap", readPcap, events, "events")
            row("read text", readText, events, "events")
            print(Table.render(rows))
            if measures(.fuzz), fuzzInputs == nil { print("(no fuzz corpus at \(fuzzCorpus): FuzzReplay not measured)") }
            print("(\(summary.packets) events, \(summary.statistics.mapOps) map ops, \(summary.statistics.unmapOps) unmap ops; files in \(folder))")
            if directory == nil { try? FileManager.default.removeItem(atPath: folder) }
        }

        private func median(_ body: () throws -> Void) rethrows -> Double {
            var times: [Double] = []
            for _ in 0..<`repeat` {
                let start = DispatchTime.now().uptimeNanoseconds
                try body()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            return times.sorted()[times.count / 2]
        }

        private static func readAll(_ path: String) throws(ReplayFailure) {
            do {
                var source = try TraceFile.open(path: path)
                // Not `!= nil`: that picks TraceEvent's Equatable `!=`, which builds
                // and destroys a pair of optionals through the runtime per event.
                while let _ = try source.next() {}
            } catch {
                throw .invalid(error.description)
            }
        }

        private static func replay(_ path: String, oracle: Bool) throws(ReplayFailure) {
            let report = TraceRunner.replay(.file(path: path), variant: .fixed, options: ReplayOptions(oracle: oracle))
            if let unreadable = ReplayFailure.unreadableTraces(in: [report]) { throw unreadable }
            guard report.verdict == .pass else {
                throw .failed("\(path) failed under fixed: \(report.violations.first.map { "\($0.violation)" } ?? "")")
            }
        }
    }
}

/// The FuzzReplay corpus as the bench drives it: what libFuzzer would call,
/// without libFuzzer's own work (mutation, coverage) around it.
enum FuzzCorpus {
    /// The inputs of `folder` in name order (so every run executes the same
    /// ones); nil when there is no such folder.
    static func load(_ folder: String) throws(ReplayFailure) -> [[UInt8]]? {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else { return nil }
        do {
            let names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { !$0.hasPrefix(".") }.sorted()
            let inputs = try names.map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: folder + "/" + $0))) }
            return inputs.isEmpty ? nil : inputs
        } catch {
            throw .invalid("cannot read the fuzz corpus \(folder): \(error.localizedDescription)")
        }
    }

    /// Runs the entry point `executions` times, cycling through `inputs`.
    /// A finding under fixed means the corpus or the harness is wrong.
    static func run(_ inputs: [[UInt8]], executions: Int) throws(ReplayFailure) {
        for execution in 0..<executions {
            if let finding = FuzzProperties.replay(inputs[execution % inputs.count], variant: .fixed) {
                throw .failed("fuzz corpus input \(execution % inputs.count) fails under fixed: \(finding)")
            }
        }
    }
}
