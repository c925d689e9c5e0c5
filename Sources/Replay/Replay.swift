import ArgumentParser
import Foundation
import FuzzSupport
import Harness
import Trace

@main
struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Replays blkback persistent-grant traces against a backend model and judges them with the oracle.",
        discussion: """
            With no subcommand, replays every trace under the given paths (the conformance gate).
            Exit status: 0 when everything passes, 1 when a trace (or the command's own verdict) fails, \
            2 for usage errors, unreadable or malformed traces and files that cannot be written. \
            Each subcommand's help says what fails for it.
            """,
        version: versionText,
        subcommands: [Run.self, Dump.self, Matrix.self, Decode.self, Minimize.self, Convert.self, Record.self, ImportTrace.self, Bench.self],
        defaultSubcommand: Run.self)

    /// The formats this build reads and writes: what a version means to a trace's author.
    private static var versionText: String {
        let traces = TraceFormat.versions.map { TraceFormat.header(version: $0) }.joined(separator: ", ")
        return "replay (xenblk-harness): traces \(traces); fuzz input formats \(FuzzFormat.versions.lowerBound)-\(FuzzFormat.version)"
    }

    /// argument-parser's own `main` exits 64 for usage errors and 1 for other
    /// errors; the README promises 0, 1 and 2, so parsing, running and
    /// exiting are spelled out here.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
            ExitStatus.success.terminate()
        } catch {
            let status = ExitStatus(for: error, in: self)
            say(error, status: status)
            status.terminate()
        }
    }

    /// Help and version go to standard output; every error to standard error,
    /// in argument-parser's words (with usage) unless it is our own.
    private static func say(_ error: any Error, status: ExitStatus) {
        let text = (error as? ReplayFailure)?.description ?? fullMessage(for: error)
        guard !text.isEmpty else { return }
        if status == .success { print(text) } else { Output.error(text) }
    }
}
