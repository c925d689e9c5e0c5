import ArgumentParser
import Backend
import Foundation
import Harness
import Recording
import Trace

extension Replay {
    /// Throughput measured against a baseline in the same run, so that the
    /// numbers compare across machines as ratios.
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure reading and replay throughput on a recorded workload (build with -c release).",
            discussion: """
                Records a seeded workload against the fixed backend, writes it as pcap and as text, then times \
                reading each encoding and replaying it with the oracle off (the baseline) and on. Each figure is \
                the median of --repeat runs; ratios are against the baseline of this same run.
                Exit status: 0; 1 when a replay of the workload fails under fixed; 2 for usage errors and \
                workload files that cannot be written or read back.
                """)

        @Option(help: "Requests in the workload.")
        var requests = 20_000

        @Option(help: "The workload's seed.")
        var seed: UInt64 = 1

        @Option(help: "Requests in flight at once (1…32).")
        var queueDepth = 8

        @Option(help: "The frontend.")
        var frontend: Workload.Frontend = .persistent

        @Option(help: "Runs per figure.")
        var `repeat` = 3

        @Option(help: "Where to put the workload files (default: a temporary folder).")
        var directory: String?

        var workload: Workload {
            Workload(seed: seed, requests: requests, frontend: frontend, queueDepth: queueDepth)
        }

        func validate() throws {
            if let problem = workload.problems.first { throw ValidationError(problem) }
        }

        func run() throws {
            let folder = directory ?? NSTemporaryDirectory() + "xenblk-bench-\(ProcessInfo.processInfo.processIdentifier)"
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
                throw ReplayFailure.cannotWrite(folder, because: error.localizedDescription)
            }
            let pcap = folder + "/workload.pcap"
            let text = folder + "/workload.trace"
            print("workload: \(frontend), \(requests) requests, queue depth \(queueDepth), seed \(seed)")
            let summary: RecordingSummary
            do { summary = try WorkloadRecorder.record(workload, to: pcap, oracle: false) } catch {
                throw ReplayFailure.invalid(error.description)
            }
            do { _ = try TraceConversion.convert(input: pcap, output: text) } catch {
                throw ReplayFailure.invalid(error.description)
            }

            let readPcap = try median { try Self.readAll(pcap) }
            let readText = try median { try Self.readAll(text) }
            let baseline = try median { try Self.replay(pcap, oracle: false) }
            let judged = try median { try Self.replay(pcap, oracle: true) }
            let judgedText = try median { try Self.replay(text, oracle: true) }

            let events = Double(summary.packets)
            let count = Double(requests)
            var rows = [["measure", "seconds", "rate", "vs baseline"]]
            func row(_ name: String, _ seconds: Double, _ per: Double, _ unit: String) {
                rows.append([name, String(format: "%.3f", seconds), String(format: "%.0f %@/s", per / seconds, unit),
                             String(format: "%.2fx", baseline / seconds)])
            }
            row("read pcap", readPcap, events, "packets")
            row("read text", readText, events, "events")
            row("replay pcap, oracle off (baseline)", baseline, count, "requests")
            row("replay pcap, oracle on", judged, count, "requests")
            row("replay text, oracle on", judgedText, count, "requests")
            print(Table.render(rows))
            print("(\(summary.statistics.mapOps) map ops, \(summary.statistics.unmapOps) unmap ops; files in \(folder))")
            if directory == nil { try? FileManager.default.removeItem(atPath: folder) }
        }

        private func median(_ body: () throws -> Void) rethrows -> Double {
            var times: [Double] = []
            for _ in 0..<max(1, `repeat`) {
                let start = DispatchTime.now().uptimeNanoseconds
                try body()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            return times.sorted()[times.count / 2]
        }

        private static func readAll(_ path: String) throws(ReplayFailure) {
            do {
                var source = try TraceFile.open(path: path)
                while try source.next() != nil {}
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
