import ArgumentParser
import Foundation
import Harness
import Trace

extension Replay {
    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dump",
            abstract: "Print a trace (.trace, .pcap or .pcapng) in canonical text.",
            discussion: """
                A ring-request packet prints as the request it encodes when encoding that request gives back \
                its bytes exactly, else as raw hex=…, so nothing recorded is lost; a ring-response packet prints \
                as expect response. Streams: a trace of any length dumps in constant memory.
                Exit status: 0; 2 when the trace cannot be read or is malformed (the events before the fault are printed).
                """)

        @Argument(help: "A trace file: text, pcap or pcapng.")
        var file: String

        @Flag(help: "Only read the trace and print how many events it has and how fast they were read (a validity check).")
        var count = false

        func run() throws {
            do {
                var source = try TraceFile.open(path: file)
                if count {
                    let started = Date()
                    var events = 0
                    // `!= nil` here would pick TraceEvent's Equatable `!=`, which
                    // builds and destroys a pair of optionals through the runtime
                    // per event; `let _` only asks whether there is one.
                    while let _ = try source.next() { events += 1 }
                    let elapsed = Date().timeIntervalSince(started)
                    print("\(file): \(events) events read in \(String(format: "%.2f", elapsed)) s (\(Int(Double(events) / max(elapsed, 1e-9))) events/s)")
                    return
                }
                // The header is read with the first event; the dump keeps its version.
                let first = try source.next()
                var printer = TextTracePrinter()
                print(printer.header(version: source.formatVersion))
                if let first { print(printer.line(for: first.kind)) }
                while let event = try source.next() { print(printer.line(for: event.kind)) }
            } catch {
                throw ReplayFailure.invalid(error.description)
            }
        }
    }
}
