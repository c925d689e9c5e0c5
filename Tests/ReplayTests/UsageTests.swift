import Foundation
import TestSupport
import Testing

/// Usage errors exit 2 in every subcommand (argument-parser alone would exit
/// 64); help and version exit 0.
@Suite struct UsageTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let arguments: [String]
        /// Words standard error must contain.
        let says: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let usageErrors: [Case] = [
        Case(arguments: ["--backend", "typo", "pass.trace"], says: "unknown backend 'typo'"),
        Case(arguments: ["--backend", "fixed+nope", "pass.trace"], says: "unknown quirk 'nope'"),
        Case(arguments: ["--bogus", "pass.trace"], says: "Unknown option '--bogus'"),
        Case(arguments: ["--format", "xml", "pass.trace"], says: "'text', 'json' or 'junit'"),
        Case(arguments: ["--jobs", "0", "pass.trace"], says: "--jobs"),
        Case(arguments: ["--jobs", "many", "pass.trace"], says: "'many' is invalid"),
        Case(arguments: ["dump"], says: "Missing expected argument '<file>'"),
        Case(arguments: ["dump", "--bogus", "pass.trace"], says: "Unknown option '--bogus'"),
        Case(arguments: ["matrix", "--jobs", "0", "pass.trace"], says: "--jobs"),
        Case(arguments: ["decode"], says: "Missing expected argument '<file>'"),
        Case(arguments: ["minimize", "--backend", "typo", "pass.trace"], says: "unknown backend 'typo'"),
        Case(arguments: ["minimize", "--max-replays", "lots", "pass.trace"], says: "'lots' is invalid"),
        Case(arguments: ["convert", "pass.trace"], says: "Missing expected argument '<output>'"),
        Case(arguments: ["convert", "pass.trace", "out.txt"], says: "OUT must end in .trace or .pcap"),
        Case(arguments: ["record", "--requests", "5"], says: "Missing expected argument '--out <out>'"),
        Case(arguments: ["record", "--out", "x.txt"], says: "--out must name a .pcap file"),
        Case(arguments: ["record", "--frontend", "modern", "--out", "x.pcap"], says: "'persistent' and 'legacy'"),
        Case(arguments: ["record", "--sectors", "zigzag", "--out", "x.pcap"], says: "'sequential' and 'random'"),
        Case(arguments: ["record", "--protocol", "arm", "--out", "x.pcap"], says: "'native', 'x86_32' or 'x86_64'"),
        Case(arguments: ["record", "--segments", "5-3", "--out", "x.pcap"], says: "'5-3' is invalid for '--segments"),
        Case(arguments: ["record", "--segments", "1-20", "--out", "x.pcap"], says: "segments per request must be within"),
        Case(arguments: ["bench", "--frontend", "modern"], says: "'persistent' and 'legacy'"),
        Case(arguments: ["bench", "--queue-depth", "0"], says: "queue depth"),
        Case(arguments: ["nonsense-subcommand-or-path"], says: "nonsense-subcommand-or-path: no such file"),
    ]

    @Test(arguments: usageErrors)
    func usageErrorExitsTwo(_ usage: Case) throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let outcome = try scratch.replay(usage.arguments)
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains(usage.says), "\(outcome)")
        #expect(outcome.standardOutput.isEmpty, "\(outcome)")
    }

    /// A misspelt backend's message lists what would have been accepted.
    @Test func unknownBackendListsTheNames() throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay("--backend", "typo")
        #expect(outcome.status == 2, "\(outcome)")
        for name in ["seed", "fixed", "handle-zero-unmapped", "free-before-drain"] {
            #expect(outcome.standardError.contains(name), "\(outcome)")
        }
    }

    @Test(arguments: [["--help"], ["-h"], ["help"], ["help", "record"], ["dump", "--help"], ["matrix", "--help"],
                      ["decode", "--help"], ["minimize", "--help"], ["convert", "--help"], ["record", "--help"],
                      ["bench", "--help"], ["run", "--help"]])
    func helpExitsZero(_ arguments: [String]) throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay(arguments)
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.standardOutput.contains("USAGE: replay"), "\(outcome)")
        #expect(outcome.standardError.isEmpty, "\(outcome)")
    }

    /// Word options list their words in --help.
    @Test func helpListsTheWordsOptionsTake() throws {
        let scratch = try WorkDirectory()
        let run = try scratch.replay("run", "--help")
        #expect(run.standardOutput.contains("values: text, json, junit"), "\(run)")
        #expect(run.standardOutput.contains("free-before-drain"), "\(run)")
        let record = try scratch.replay("record", "--help")
        #expect(record.standardOutput.contains("values: persistent, legacy"), "\(record)")
        #expect(record.standardOutput.contains("values: sequential, random"), "\(record)")
        #expect(record.standardOutput.contains("values: native, x86_32, x86_64"), "\(record)")
    }

    @Test func versionExitsZero() throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay("--version")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.standardOutput.contains("xenblk-trace 1"), "\(outcome)")
    }
}
