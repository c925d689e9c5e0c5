import ArgumentParser
import Foundation
import Harness

/// The exit statuses the README documents, and no others.
enum ExitStatus: Int32 {
    /// Everything asked for was done and passed.
    case success = 0
    /// The command ran to the end and its verdict is negative: a trace failed,
    /// the matrix found fixed failing or a quirk undetected, and so on.
    case failure = 1
    /// The command could not do what was asked: a usage error, an unreadable
    /// or malformed trace, a file that cannot be written.
    case invalid = 2

    /// The status an error ends the process with. argument-parser would exit
    /// 64 for usage errors and 1 for anything else; here usage errors and
    /// unexpected errors alike mean the command could not run, so 2, and
    /// only a `ReplayFailure` says otherwise.
    init(for error: any Error, in command: any ParsableCommand.Type) {
        if let failure = error as? ReplayFailure {
            self = failure.status
        } else if command.exitCode(for: error).isSuccess {
            self = .success   // --help, --version, `help`
        } else {
            self = .invalid
        }
    }

    /// Ends the process with this status. (Inside a command type, `exit`
    /// names argument-parser's `exit(withError:)`, which maps statuses its own way.)
    func terminate() -> Never {
        exit(rawValue)
    }
}

/// Why a subcommand stopped short of success after parsing, with what to
/// tell the user: argument-parser's `ValidationError` is for the command
/// line only, and would print usage for a trace that failed to parse.
struct ReplayFailure: Error, CustomStringConvertible {
    let status: ExitStatus
    /// The lines for standard error; empty when the command's own output
    /// has already said everything (a failing trace in the report).
    let description: String

    /// A negative verdict the command has already reported.
    static let reportedFailure = ReplayFailure(status: .failure, description: "")

    /// A negative verdict, explained.
    static func failed(_ message: String) -> ReplayFailure {
        ReplayFailure(status: .failure, description: message)
    }

    /// Whatever keeps the command from doing what was asked: unreadable or
    /// malformed input, a step that could not be carried out.
    static func invalid(_ message: String) -> ReplayFailure {
        ReplayFailure(status: .invalid, description: message)
    }

    /// The traces among these reports that could not be read or parsed, each
    /// named with its line or packet; nil when every trace was read.
    static func unreadableTraces(in reports: [ReplayReport]) -> ReplayFailure? {
        let errors = reports.compactMap(\.traceError)
        guard !errors.isEmpty else { return nil }
        return .invalid(errors.map(\.description).joined(separator: "\n"))
    }

    /// An output file that could not be written.
    static func cannotWrite(_ path: String, because reason: String) -> ReplayFailure {
        ReplayFailure(status: .invalid, description: "\(path): cannot write: \(reason)")
    }
}
