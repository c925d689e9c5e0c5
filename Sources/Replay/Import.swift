import ArgumentParser
import Backend
import Blkif
import Foundation
import Import
import Recording

extension Replay {
    struct ImportTrace: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Import a recorded block I/O trace and replay it through the frontend models as a pcap trace.",
            discussion: """
                FORMAT is one of: blkparse (blkparse's default output; --blkparse-action picks Q or D, C events are \
                completions), fio (iolog version 2 or 3, from its header; v3 timestamps in microseconds), msr (MSR \
                Cambridge CSV), spc (UMass Financial/WebSearch CSV), alibaba (device_id,opcode,offset,length,timestamp), \
                tencent (Timestamp,Offset,Size,IOType,VolumeID). FILE may be gzip-compressed (told by its magic bytes).
                Offsets and lengths become 512-byte sectors: reads and writes widen to whole sectors (counted as \
                widened), trims narrow to the sectors they cover whole; a request of more than 11 pages is split into \
                ring requests (or, with --indirect and a G2013 or G2018 backend, indirect requests of up to 256 segments); trims become discards (the disk then offers discard; one longer than 1 GiB is cut to 1 GiB, \
                counted), syncs and blkparse F flushes become flushes, a blkparse FWS write a flush then the write; the trace's time becomes tick events (format version 2). Each device gets a vbd (or \
                --device picks one), with a disk just large enough for its I/O unless --disk-sectors says.
                Lines skipped and counted, not errors: blank lines, lines starting with #, a CSV header line before the \
                first record, blkparse's m messages, other actions and its summary block, blkparse requests without \
                data, fio add/open/close and wait lines, zero-length I/O, trims shorter than a sector, other devices \
                under --device, I/O beyond --disk-sectors, and completions that match nothing in flight. Any other line \
                that does not read is an error naming the file and line; nothing is written then.
                The chosen frontend's run is written to --out (through a temporary file beside it, renamed when \
                complete); the other frontend is run in memory on the same records for the summary's comparison.
                Exit status: 0; 1 when the oracle finds a violation in either run or the backend panics (the file is \
                still written); 2 for usage errors, unreadable or malformed input and an --out that cannot be written.
                """)

        @Argument(help: "The trace's format: \(ImportFormat.allCases.map(\.rawValue).joined(separator: ", ")).")
        var format: ImportFormat

        @Argument(help: "The trace file (plain or gzip).")
        var file: String

        @Option(help: "The pcap file to write.")
        var out: String

        @Option(help: "The frontend written to --out; the other is compared in memory.")
        var frontend: Workload.Frontend = .persistent

        @Option(help: "Requests in flight per vbd: N (1...32), or 'trace' to follow the trace's completions (msr, blkparse; their default). Others default to 1.")
        var queueDepth: QueueDepthArgument?

        @Option(help: "blkparse: the action that is the request stream, Q (queued) or D (issued to the driver).")
        var blkparseAction: BlkparseAction = .D

        @Option(help: "Import only this device (MSR: HOST,DISK; blkparse: MAJ,MIN; fio: the file; SPC: the ASU; Alibaba, Tencent: the volume).")
        var device: String?

        @Option(help: "Every vbd's disk size in 512-byte sectors (default: just enough for the trace); I/O beyond it is skipped.")
        var diskSectors: UInt64?

        @Flag(help: "Records of more than 11 pages as indirect requests of up to 256 segments (needs a G2013 or G2018 --backend).")
        var indirect = false

        @Option(help: "Import only the first N records (a prefix of a long trace).")
        var maxRecords: Int?

        @Option(name: .customLong("protocol"), help: "The ring ABI.")
        var ringProtocol: BlkifProtocol = .native

        @Option(help: "The frontend's domain.")
        var domid: UInt16 = 1

        @OptionGroup var backendOption: BackendOption

        @Flag(inversion: .prefixedNo, help: "Judge both runs with the oracle.")
        var oracle = true

        @Option(help: "Also draw the persistent grants held, the hit rate and the unmap hypercalls over the trace, persistent against legacy, as SVG.")
        var plot: String?

        var options: ImportOptions {
            var options = ImportOptions(format: format)
            options.blkparseAction = blkparseAction
            options.frontend = frontend
            options.protocolName = ringProtocol
            options.domid = domid
            options.queueDepth = queueDepth?.depth
            options.device = device
            options.diskSectors = diskSectors
            options.maxRecords = maxRecords
            options.indirect = indirect
            options.variant = backendOption.backend
            options.oracle = oracle
            return options
        }

        func validate() throws {
            if let problem = options.problems.first { throw ValidationError(problem) }
            guard out.lowercased().hasSuffix(".pcap") else { throw ValidationError("--out must name a .pcap file: \(out)") }
            if let plot, !plot.lowercased().hasSuffix(".svg") { throw ValidationError("--plot must name a .svg file: \(plot)") }
        }

        func run() throws {
            let progress = isatty(STDERR_FILENO) == 1 ? ImportProgress(show: { ImportReport.progress($0) }) : nil
            let summary: ImportSummary
            do {
                summary = try TraceImporter.run(path: file, out: out, options: options, plot: plot != nil, progress: progress)
            } catch {
                if progress != nil { ImportReport.progress("") }
                throw ReplayFailure.invalid(error.description)
            }
            if progress != nil { ImportReport.progress("") }
            if let plot, let persistent = summary.persistentSeries, let legacy = summary.legacySeries {
                let svg = GrantPlot(title: "\(file) (\(format.rawValue)): persistent against legacy grants",
                                    persistent: persistent, legacy: legacy).svg
                try Output.write(svg, to: plot)
            }
            print(ImportReport.render(summary))
            if summary.failed { throw ReplayFailure.reportedFailure }
        }
    }
}

/// `--queue-depth N` or `trace`.
struct QueueDepthArgument: ExpressibleByArgument {
    let depth: QueueDepth

    init?(argument: String) {
        if argument == "trace" {
            depth = .trace
        } else if let number = Int(argument) {
            depth = .fixed(number)
        } else {
            return nil
        }
    }
}

extension ImportFormat: ExpressibleByArgument {}
extension BlkparseAction: ExpressibleByArgument {}
