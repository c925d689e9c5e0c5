import ArgumentParser
import Backend
import Blkif
import Foundation
import Harness
import Recording

/// `--format`: how `run` renders its report.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, junit
}

/// `--backend`, turned into a variant while the command line is parsed, so
/// that a misspelt name is a usage error (exit 2) before anything runs.
struct BackendOption: ParsableArguments {
    // A transform, not ExpressibleByArgument, so the error can say which
    // part of the name is wrong; argument-parser then shows no default, so
    // the help says it.
    @Option(help: ArgumentHelp("The backend: seed, fixed, or fixed+QUIRK[+QUIRK…] (G2012, the 2012 change); linux-3.11, g2013, or g2013+QUIRK[+QUIRK…] (G2013, the 2013 rework); linux-4.19, linux-5.10, linux-5.10.18, g2018, or g2018+QUIRK[+QUIRK…] (G2018, today's design) (default: fixed).",
                               discussion: BackendName.quirksByGeneration,
                               valueName: "backend"),
            transform: { try BackendName.parse($0) })
    var backend: BackendVariant = .fixed
}

/// Backend names as the command line takes them.
enum BackendName {
    static let quirkList = Quirk.allCases.map(\.rawValue).joined(separator: ", ")
    /// Which quirks each generation takes, for the help.
    static let quirksByGeneration = Generation.allCases.map { generation in
        "QUIRK of \(generation.fixedName): " + generation.quirks.map(\.rawValue).joined(separator: ", ") + "."
    }.joined(separator: " ")

    /// argument-parser shows the description of what this throws after
    /// "The value 'NAME' is invalid for '--backend <backend>': ".
    static func parse(_ name: String) throws -> BackendVariant {
        do { return try BackendVariant(name: name) } catch { throw Unknown(error: error) }
    }

    struct Unknown: Error, CustomStringConvertible {
        let error: BackendVariant.NameError

        /// The backend's own message gives the forms; for a wholly unknown
        /// name it does not list the quirks, so they are added here.
        var description: String {
            switch error {
            case .unknown: "\(error); \(BackendName.quirksByGeneration)"
            case .unknownQuirk, .quirkOfAnotherGeneration: error.description
            }
        }
    }
}

/// `--jobs`, shared by the commands that replay many traces at once.
struct JobsOption: ParsableArguments {
    @Option(help: "Traces replayed at once; by default, as many as there are cores.")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    /// Zero workers would wait for each other forever.
    func validate() throws {
        guard jobs >= 1 else { throw ValidationError("--jobs takes a number of at least 1") }
    }
}

// The model's own word lists (raw values, CaseIterable) taken as option
// values, so --help lists them; conformed here because only the command
// line parses them, and the model modules stay free of ArgumentParser.
extension Workload.Frontend: ExpressibleByArgument {}
extension Workload.SectorPattern: ExpressibleByArgument {}
extension BlkifProtocol: ExpressibleByArgument {}

/// `record --segments N` or `A-B`: how many segments each request has.
/// Whether the range fits a request is the workload's to say.
struct SegmentRange: ExpressibleByArgument, CustomStringConvertible {
    let range: ClosedRange<Int>

    init(_ range: ClosedRange<Int>) { self.range = range }

    init?(argument: String) {
        let parts = argument.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        switch (parts.count, parts.first ?? nil, parts.last ?? nil) {
        case (1, let count?, _): range = count...count
        case (2, let low?, let high?) where low <= high: range = low...high
        default: return nil
        }
    }

    var description: String {
        range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
    }
}
