import ArgumentParser
import Foundation
import Trace

extension Replay {
    struct Convert: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "convert",
            abstract: "Convert a trace between text and pcap, by the files' extensions.",
            discussion: """
                IN is a .trace, .pcap or .pcapng file; OUT a .trace (canonical text) or a .pcap (written through \
                libpcap; pcapng is read, not written). Streams: a trace of any length converts in constant memory. \
                An event the output cannot carry (a request on a vbd never connected, a raw request of the wrong \
                size for pcap) is an error naming the input's line or packet; OUT is then removed.
                Exit status: 0; 2 for usage errors, an unreadable or malformed trace, an event OUT cannot \
                carry and an OUT that cannot be written.
                """)

        @Argument(help: "The trace to read (.trace, .pcap or .pcapng).")
        var input: String

        @Argument(help: "The file to write (.trace or .pcap).")
        var output: String

        func validate() throws {
            let lowered = output.lowercased()
            guard lowered.hasSuffix(".trace") || lowered.hasSuffix(".pcap") else {
                throw ValidationError("OUT must end in .trace or .pcap (pcapng is read, not written): \(output)")
            }
            guard input != output else { throw ValidationError("IN and OUT are the same file: \(input)") }
        }

        func run() throws {
            do {
                let count = try TraceConversion.convert(input: input, output: output)
                print("\(input) → \(output): \(count) events")
            } catch {
                unlink(output)
                throw ReplayFailure.invalid(error.description)
            }
        }
    }
}
