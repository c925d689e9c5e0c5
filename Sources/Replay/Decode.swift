import ArgumentParser
import Blkif
import Foundation
import FuzzSupport
import Harness
import Trace

extension Replay {
    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "decode",
            abstract: "Print the trace a fuzz input stands for (or, with --encode, the fuzz input a trace stands for).",
            discussion: """
                A fuzz input is any byte string, such as a crash file libFuzzer wrote for FuzzReplay; \
                it is decoded with fuzz input format \(FuzzFormat.version) (Sources/FuzzSupport/FuzzDecoder.swift), \
                or the older one --fuzz-format names (for a file saved under it), into a canonical text trace. With --encode, FILE is a trace (text or pcap) and the fuzz \
                input it stands for is written to --output; events outside the decoder's domain \
                (expectations, values no choice produces) are left out and listed on standard error.
                Exit status: 0; 1 with --encode --exact when an event other than an expectation was left out; \
                2 for usage errors, an unreadable input, a malformed trace and files that cannot be written.
                """)

        @Argument(help: "A fuzz input (with --encode: a trace).")
        var file: String

        @Option(help: ArgumentHelp("The fuzz input format to decode with: \(FuzzFormat.versions.map(String.init).joined(separator: " or ")) (default: \(FuzzFormat.version), what today's fuzz targets use).",
                                   valueName: "version"))
        var fuzzFormat: Int = FuzzFormat.version

        @Flag(help: "Encode the trace FILE as a fuzz input instead.")
        var encode = false

        @Option(name: .shortAndLong, help: "Write the output to this file instead of standard output.")
        var output: String?

        @Flag(help: "With --encode: fail (exit 1) when any event other than an expectation is left out.")
        var exact = false

        @Option(help: ArgumentHelp("With --encode: also write each ring request of the trace as a FuzzRequestABI input into this directory.",
                                   valueName: "directory"))
        var abiSeeds: String?

        func validate() throws {
            guard FuzzFormat.versions.contains(fuzzFormat) else {
                throw ValidationError("--fuzz-format \(fuzzFormat) is not a fuzz input format; expected "
                                      + FuzzFormat.versions.map(String.init).joined(separator: " or "))
            }
        }

        func run() throws {
            if encode { return try encodeTrace() }
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ReplayFailure.invalid("\(file): cannot read the fuzz input; expected a readable file of any bytes")
            }
            let events = FuzzDecoder.decode(data, version: fuzzFormat)
            let consumed = min(data.count, FuzzFormat.maxInput)
            var text = "# decoded from \((file as NSString).lastPathComponent) by replay decode "
                + "(fuzz input format \(fuzzFormat), \(consumed) bytes, \(events.count) events)\n"
            text += TextTracePrinter.render(events)
            try Output.write(Data(text.utf8), to: output)
        }

        private func encodeTrace() throws {
            let kinds = try TraceFiles.readEvents(file)
            let encoding = FuzzEncoder.encode(kinds)
            for (index, reason) in encoding.skipped {
                Output.error("\(file): event \(index + 1) left out: \(reason)")
            }
            try Output.write(Data(encoding.bytes), to: output)
            if let abiSeeds { try writeABISeeds(kinds, into: abiSeeds) }
            if exact && !encoding.isExact() {
                throw ReplayFailure.failed("\(file): --exact: events other than expectations were left out (listed above)")
            }
        }

        /// One FuzzRequestABI input per distinct ring request of the trace.
        private func writeABISeeds(_ kinds: [TraceEventKind], into directory: String) throws {
            var state = TraceState()
            var seeds: Set<[UInt8]> = []
            for kind in kinds {
                defer { state.apply(kind) }
                switch kind {
                case .request(let request):
                    guard let ringProtocol = state.ringProtocol(ofVbd: request.vbd) else { continue }
                    seeds.insert(FuzzProperties.abiInput(protocol: ringProtocol, response: false,
                                                         bytes: ringProtocol.encode(request.blkifRequest)))
                case .raw(let raw):
                    guard let ringProtocol = state.ringProtocol(ofVbd: raw.vbd) else { continue }
                    seeds.insert(FuzzProperties.abiInput(protocol: ringProtocol, response: false, bytes: raw.bytes))
                default:
                    continue
                }
            }
            let base = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
            for seed in seeds {
                // Named by content, so seeding twice adds nothing.
                let hash = seed.reduce(UInt64(0xCBF2_9CE4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
                let path = directory + "/" + base + "-" + String(hash, radix: 16)
                try Output.write(Data(seed), to: path)
            }
        }
    }
}
