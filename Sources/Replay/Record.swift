import ArgumentParser
import Backend
import Blkif
import Harness

extension Workload.Frontend: ExpressibleByArgument {}
extension Workload.SectorPattern: ExpressibleByArgument {}
extension BlkifProtocol: ExpressibleByArgument {}

extension Replay {
    struct Record: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a frontend workload against the fixed backend as a pcap trace.",
            discussion: """
                A deterministic, seeded model of how blkfront drives the ring: the persistent frontend reuses a \
                pool of granted pages (last freed, first reused) that grows up to a ring's worth; the legacy \
                frontend grants fresh pages per request and revokes them after the response. The workload is \
                replayed against the fixed backend (judged by the oracle unless --no-oracle) and written with \
                the responses seen as kind-3 packets, the recording's expectations. The same options give the \
                same bytes; persistent and legacy runs of one seed do the same I/O.
                """)

        @Option(help: "The frontend: persistent or legacy.")
        var frontend: Workload.Frontend = .persistent

        @Option(help: "Requests to issue.")
        var requests: Int = 1000

        @Option(help: "The seed of the workload.")
        var seed: UInt64 = 1

        @Option(help: "The pcap file to write.")
        var out: String

        @Option(help: "The share of reads, 0...1; the rest are writes.")
        var readFraction: Double = 0.5

        @Option(help: "Segments per request: N or A-B (within 1-11).")
        var segments: String = "1-11"

        @Option(help: "Sectors: sequential or random.")
        var sectors: Workload.SectorPattern = .sequential

        @Option(help: "Requests in flight at most, 1...32; above 1 they are held and completed out of order.")
        var queueDepth: Int = 1

        @Option(help: "Disconnect and connect again after every N requests.")
        var reconnectEvery: Int?

        @Option(name: .customLong("protocol"), help: "The ring ABI: native, x86_32 or x86_64.")
        var ringProtocol: BlkifProtocol = .native

        @Option(help: "The frontend's domain.")
        var domid: UInt16 = 1

        @Option(help: "The disk's size in 512-byte sectors.")
        var diskSectors: UInt64 = 262_144

        @Flag(inversion: .prefixedNo, help: "Judge the recording with the oracle.")
        var oracle = true

        func workload() throws -> Workload {
            let parts = segments.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            let range: ClosedRange<Int>
            switch parts.count {
            case 1 where parts[0] != nil: range = parts[0]!...parts[0]!
            case 2 where parts[0] != nil && parts[1] != nil && parts[0]! <= parts[1]!: range = parts[0]!...parts[1]!
            default: throw ValidationError("--segments takes N or A-B with A <= B, e.g. 1-11: \(segments)")
            }
            let workload = Workload(seed: seed, requests: requests, frontend: frontend, readFraction: readFraction,
                                    segments: range, sectorPattern: sectors, queueDepth: queueDepth,
                                    reconnectEvery: reconnectEvery, protocolName: ringProtocol, domid: domid,
                                    diskSectors: diskSectors)
            if let problem = workload.problems.first { throw ValidationError(problem) }
            return workload
        }

        func validate() throws {
            _ = try workload()
            guard out.lowercased().hasSuffix(".pcap") else { throw ValidationError("--out must name a .pcap file: \(out)") }
        }

        func run() throws {
            let summary: RecordingSummary
            do { summary = try WorkloadRecorder.record(try workload(), to: out, oracle: oracle) } catch let error as RecordingError {
                FileOutput.standardError(error.description)
                throw ExitCode(2)
            }
            print(RecordingReport.render(summary))
            if summary.violationCount > 0 || summary.panicked { throw ExitCode(1) }
        }
    }
}
