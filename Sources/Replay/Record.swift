import ArgumentParser
import Backend
import Blkif
import Harness
import Recording

extension Replay {
    struct Record: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "record",
            abstract: "Record a frontend workload against the fixed backend as a pcap trace.",
            discussion: """
                A deterministic, seeded model of how blkfront drives the ring: the persistent frontend reuses a \
                pool of granted pages (last freed, first reused) that grows up to a ring's worth; the legacy \
                frontend grants fresh pages per request and revokes them after the response. The workload is \
                replayed against the fixed backend (judged by the oracle unless --no-oracle) and written with \
                the responses seen as kind-3 packets, the recording's expectations. The same options give the \
                same bytes; persistent and legacy runs of one seed do the same I/O.
                Exit status: 0; 1 when the oracle finds a violation in the recording or the backend panics (the \
                file is still written); 2 for usage errors and an --out that cannot be written.
                """)

        @Option(help: "The frontend.")
        var frontend: Workload.Frontend = .persistent

        @Option(help: "Requests to issue.")
        var requests: Int = 1000

        @Option(help: "The seed of the workload.")
        var seed: UInt64 = 1

        @Option(help: "The pcap file to write.")
        var out: String

        @Option(help: "The share of reads, 0...1; the rest are writes.")
        var readFraction: Double = 0.5

        @Option(help: "Segments per request: N, or A-B with A <= B (within 1-11).")
        var segments = SegmentRange(1...11)

        @Option(help: "Where each request starts: after the previous one, or anywhere.")
        var sectors: Workload.SectorPattern = .sequential

        @Option(help: "Requests in flight at most, 1...32; above 1 they are held and completed out of order.")
        var queueDepth: Int = 1

        @Option(help: "Disconnect and connect again after every N requests.")
        var reconnectEvery: Int?

        @Option(name: .customLong("protocol"), help: "The ring ABI.")
        var ringProtocol: BlkifProtocol = .native

        @Option(help: "The frontend's domain.")
        var domid: UInt16 = 1

        @Option(help: "The disk's size in 512-byte sectors.")
        var diskSectors: UInt64 = 262_144

        @Flag(inversion: .prefixedNo, help: "Judge the recording with the oracle.")
        var oracle = true

        var workload: Workload {
            Workload(seed: seed, requests: requests, frontend: frontend, readFraction: readFraction,
                     segments: segments.range, sectorPattern: sectors, queueDepth: queueDepth,
                     reconnectEvery: reconnectEvery, protocolName: ringProtocol, domid: domid,
                     diskSectors: diskSectors)
        }

        func validate() throws {
            if let problem = workload.problems.first { throw ValidationError(problem) }
            guard out.lowercased().hasSuffix(".pcap") else { throw ValidationError("--out must name a .pcap file: \(out)") }
        }

        func run() throws {
            let summary: RecordingSummary
            do { summary = try WorkloadRecorder.record(workload, to: out, oracle: oracle) } catch {
                throw ReplayFailure.invalid(error.description)
            }
            print(RecordingReport.render(summary))
            if summary.violationCount > 0 || summary.panicked { throw ReplayFailure.reportedFailure }
        }
    }
}
