import Foundation
import TestSupport
import Testing

/// `replay [PATH…]`, the conformance gate: 0 all pass, 1 a trace fails,
/// 2 unreadable or malformed traces; the text report ends `N passed, M failed`.
@Suite struct GateTests {
    @Test func passingTraceExitsZero() throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let outcome = try scratch.replay("pass.trace")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.lastLine == "1 passed, 0 failed", "\(outcome)")
    }

    @Test func failingTraceExitsOneAndNamesTheLine() throws {
        let scratch = try WorkDirectory()
        try scratch.write("fail.trace", SampleTrace.failing)
        let outcome = try scratch.replay("fail.trace")
        #expect(outcome.status == 1, "\(outcome)")
        #expect(outcome.standardOutput.contains("fail.trace:6: expect [fixed]: expected persistent=5"), "\(outcome)")
        #expect(outcome.lastLine == "0 passed, 1 failed", "\(outcome)")
    }

    @Test func directoryWithOneFailureCountsBoth() throws {
        let scratch = try WorkDirectory()
        try scratch.write("suite/a-pass.trace", SampleTrace.passing)
        try scratch.write("suite/b-fail.trace", SampleTrace.failing)
        try scratch.write("suite/notes.txt", "not a trace: skipped in a directory")
        let outcome = try scratch.replay("suite")
        #expect(outcome.status == 1, "\(outcome)")
        #expect(outcome.lastLine == "1 passed, 1 failed", "\(outcome)")
    }

    @Test func malformedTraceExitsTwoAndNamesFileAndLineOnStandardError() throws {
        let scratch = try WorkDirectory()
        try scratch.write("bad.trace", SampleTrace.malformed)
        let outcome = try scratch.replay("bad.trace")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("bad.trace:3:1: unknown keyword 'frobnicate'"), "\(outcome)")
        #expect(outcome.lastLine == "0 passed, 1 failed", "\(outcome)")
    }

    @Test func malformedTraceBeatsAFailingOne() throws {
        let scratch = try WorkDirectory()
        try scratch.write("suite/bad.trace", SampleTrace.malformed)
        try scratch.write("suite/fail.trace", SampleTrace.failing)
        let outcome = try scratch.replay("suite")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.lastLine == "0 passed, 2 failed", "\(outcome)")
    }

    @Test func nonexistentPathExitsTwo() throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay("no-such.trace")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("no-such.trace: no such file or directory"), "\(outcome)")
    }

    @Test func directoryWithoutTracesExitsTwo() throws {
        let scratch = try WorkDirectory()
        try scratch.write("empty/README", "nothing to replay")
        let outcome = try scratch.replay("empty")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("no trace files"), "\(outcome)")
    }

    @Test func jsonReportToAFileLeavesTheCountOnStandardOutput() throws {
        let scratch = try WorkDirectory()
        try scratch.write("fail.trace", SampleTrace.failing)
        let outcome = try scratch.replay("--format", "json", "--output", "report.json", "fail.trace")
        #expect(outcome.status == 1, "\(outcome)")
        #expect(outcome.standardOutput == "0 passed, 1 failed\n", "\(outcome)")
        let report = try JSONSerialization.jsonObject(with: Data(scratch.contents("report.json").utf8))
        let entries = try #require(report as? [[String: Any]])
        #expect(entries.first?["verdict"] as? String == "fail")
    }

    @Test func malformedTraceWithJSONReportKeepsStandardOutputJSON() throws {
        let scratch = try WorkDirectory()
        try scratch.write("bad.trace", SampleTrace.malformed)
        let outcome = try scratch.replay("--format", "json", "bad.trace")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("bad.trace:3:1:"), "\(outcome)")
        #expect((try? JSONSerialization.jsonObject(with: Data(outcome.standardOutput.utf8))) != nil, "\(outcome)")
    }

    @Test func unwritableOutputExitsTwo() throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let outcome = try scratch.replay("--output", "missing-dir/report.txt", "pass.trace")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("missing-dir/report.txt: cannot write"), "\(outcome)")
    }

    @Test func explicitRunSubcommandIsTheGate() throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let outcome = try scratch.replay("run", "--backend", "fixed+free-before-drain", "--jobs", "1", "pass.trace")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.standardOutput.contains("PASS pass.trace [fixed+free-before-drain]"), "\(outcome)")
    }

    /// The suite this repository gates on, as CI runs it.
    @Test func repositorySuitePassesUnderFixed() throws {
        let outcome = try replay(["traces"], in: Repository.root)
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.lastLine.wholeMatch(of: /[1-9][0-9]* passed, 0 failed/) != nil, "\(outcome)")
    }
}
