import Backend
import Foundation
import TestSupport
import Testing

/// Every subcommand that reads a trace: a malformed one exits 2 and names
/// its file, line and column on standard error, and leaves no output file.
@Suite struct MalformedTraceTests {
    @Test(arguments: [["dump", "bad.trace"], ["matrix", "bad.trace"], ["minimize", "bad.trace"],
                      ["decode", "--encode", "bad.trace"], ["convert", "bad.trace", "bad.pcap"]])
    func exitsTwoNamingTheLine(_ arguments: [String]) throws {
        let scratch = try WorkDirectory()
        try scratch.write("bad.trace", SampleTrace.malformed)
        let outcome = try scratch.replay(arguments)
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("bad.trace:3:1:"), "\(outcome)")
        #expect(!scratch.exists("bad.pcap"))
    }
}

/// Each subcommand's documented statuses beyond usage errors (UsageTests).
@Suite struct DumpTests {
    @Test func printsCanonicalText() throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let outcome = try scratch.replay("dump", "pass.trace")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.standardOutput.hasPrefix("xenblk-trace 1\nconnect domid=7"), "\(outcome)")
    }

    @Test func missingFileExitsTwo() throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay("dump", "--count", "gone.pcap")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("gone.pcap"), "\(outcome)")
    }
}

@Suite struct MatrixTests {
    /// The known defects: each generation's defect-free backend is clean on
    /// them and each of its quirks is detected.
    @Test func knownDefectsDetectEveryQuirk() throws {
        let outcome = try replay(["matrix", "traces/known-defects"], in: Repository.root)
        #expect(outcome.status == 0, "\(outcome)")
        let quirks = BackendVariant.matrix.filter { !$0.quirks.isEmpty }.count
        #expect(outcome.lastLine == "\(quirks) of \(quirks) quirks detected; fixed clean, g2013 clean, g2018 clean", "\(outcome)")
    }

    @Test func undetectedQuirksExitOne() throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let outcome = try scratch.replay("matrix", "pass.trace")
        #expect(outcome.status == 1, "\(outcome)")
        #expect(outcome.standardOutput.contains("UNDETECTED"), "\(outcome)")
    }
}

@Suite struct DecodeTests {
    @Test func anyBytesDecodeToATrace() throws {
        let scratch = try WorkDirectory()
        try scratch.write("input", "any bytes at all")
        let outcome = try scratch.replay("decode", "input")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.standardOutput.hasPrefix("# decoded from input by replay decode"), "\(outcome)")
    }

    @Test func encodeWritesTheOutputFile() throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let outcome = try scratch.replay("decode", "--encode", "--exact", "pass.trace", "-o", "pass.fuzz")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(scratch.exists("pass.fuzz"))
    }

    @Test func exactEncodingThatLeavesEventsOutExitsOne() throws {
        let scratch = try WorkDirectory()
        try scratch.write("long.trace", SampleTrace.longerThanAFuzzInput)
        let outcome = try scratch.replay("decode", "--encode", "--exact", "long.trace", "-o", "long.fuzz")
        #expect(outcome.status == 1, "\(outcome)")
        #expect(outcome.standardError.contains("long.trace: event 301 left out"), "\(outcome)")
    }

    @Test func unreadableInputExitsTwo() throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay("decode", "gone")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("gone: cannot read"), "\(outcome)")
    }
}

@Suite struct MinimizeTests {
    @Test func failingTraceIsMinimized() throws {
        let scratch = try WorkDirectory()
        try scratch.write("fail.trace", SampleTrace.failing)
        let outcome = try scratch.replay("minimize", "fail.trace", "-o", "min.trace")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(try scratch.contents("min.trace").contains("expect persistent=5"))
    }

    /// A finding of version-1 events under a later generation's quirk is
    /// scoped to that generation before the shipped forms are tried, so
    /// each shipped form that shows the same check is named too.
    @Test func aG2018FindingNamesItsGenerationAndEveryShippedFormThatShowsIt() throws {
        let scratch = try WorkDirectory()
        try scratch.write("sticks.trace", "xenblk-trace 2\nfrontend-key feature-persistent 2\nconnect domid=2\ngrant gref=1\n")
        let outcome = try scratch.replay("minimize", "--backend", "g2018+negotiation-sticks-at-zero", "sticks.trace")
        #expect(outcome.status == 0, "\(outcome)")
        let lines = outcome.standardOutput.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(lines == ["xenblk-trace 2", "generations g2018",
                          "expect violation negotiation backend=g2018+negotiation-sticks-at-zero",
                          "expect violation negotiation backend=linux-5.10",
                          "expect violation negotiation backend=linux-5.10.18",
                          "frontend-key feature-persistent 2", "connect domid=2"], "\(outcome)")
    }

    @Test func passingTraceHasNothingToKeepAndExitsOne() throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let outcome = try scratch.replay("minimize", "pass.trace")
        #expect(outcome.status == 1, "\(outcome)")
        #expect(outcome.standardError.contains("pass.trace: the trace passes under fixed"), "\(outcome)")
    }
}

@Suite struct ConvertTests {
    @Test func textToPcapAndBackDumpsTheSame() throws {
        let scratch = try WorkDirectory()
        try scratch.write("pass.trace", SampleTrace.passing)
        let convert = try scratch.replay("convert", "pass.trace", "pass.pcap")
        #expect(convert.status == 0, "\(convert)")
        let fromText = try scratch.replay("dump", "pass.trace")
        let fromPcap = try scratch.replay("dump", "pass.pcap")
        #expect(fromPcap.status == 0, "\(fromPcap)")
        #expect(fromPcap.standardOutput == fromText.standardOutput)
    }
}

@Suite struct RecordTests {
    @Test func recordsAWorkload() throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay("record", "--frontend", "legacy", "--requests", "20", "--segments", "2",
                                         "--sectors", "random", "--protocol", "x86_32", "--out", "w.pcap")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.standardOutput.hasPrefix("recorded w.pcap: legacy frontend"), "\(outcome)")
        let replayed = try scratch.replay("w.pcap")
        #expect(replayed.status == 0, "\(replayed)")
    }

    @Test func unwritableOutExitsTwo() throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay("record", "--requests", "5", "--out", "missing-dir/w.pcap")
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.standardError.contains("missing-dir/w.pcap"), "\(outcome)")
    }
}

@Suite struct BenchTests {
    @Test func smallBenchRuns() throws {
        let scratch = try WorkDirectory()
        let outcome = try scratch.replay("bench", "--requests", "50", "--repeat", "1", "--directory", "bench")
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.standardOutput.contains("replay pcap, oracle on"), "\(outcome)")
        #expect(scratch.exists("bench/workload.pcap"))
    }
}
