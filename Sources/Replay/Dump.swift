import ArgumentParser
import Harness
import Trace

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a trace in canonical text.")

    @Argument(help: "A trace file.")
    var file: String

    func run() throws {
        do {
            var source = try TraceFile.open(path: file)
            var printer = TextTracePrinter()
            print(printer.header())
            while let event = try source.next() { print(printer.line(for: event.kind)) }
        } catch {
            FileOutput.standardError(error.description)
            throw ExitCode(2)
        }
    }
}
