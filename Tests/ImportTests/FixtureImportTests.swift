import Foundation
import Backend
import Harness
@testable import Import
import Recording
import TestSupport
import Testing
import Trace
import TracePcap

@Suite struct FixtureImportTests {
    /// Every fixture imports, replays clean under fixed, and gives the same bytes twice.
    @Test(arguments: Fixture.all.map(\.name))
    func importsReplayCleanAndAreDeterministic(_ name: String) throws {
        let format = Fixture.all.first { $0.name == name }!.format
        let scratch = try Scratch("fixture")
        defer { scratch.cleanUp() }
        let first = scratch.path("a.pcap")
        let summary = try importTrace(format, Fixture.path(name), to: first)
        #expect(!summary.failed, "\(summary.written.outcome.kept) \(summary.compared.outcome.kept)")
        #expect(summary.written.converted > 0)
        #expect(summary.written.frontendTally.failedResponses == 0)
        let report = TraceRunner.replay(.file(path: first), variant: .fixed)
        #expect(report.verdict == .pass, "\(report.violations.prefix(3)) \(String(describing: report.traceError))")
        #expect(report.statistics.requests == summary.written.requests)
        let second = scratch.path("b.pcap")
        _ = try importTrace(format, Fixture.path(name), to: second)
        #expect(try bytes(of: first) == bytes(of: second))
        // The ticks are the trace's time, exactly as counted.
        #expect(try tickedMilliseconds(first) == summary.written.tickedMilliseconds)
    }

    /// The same records through both frontends: the persistent one unmaps
    /// only its pool, once; the legacy one every segment.
    @Test(arguments: Fixture.all.map(\.name))
    func persistentUnmapsFarLess(_ name: String) throws {
        let format = Fixture.all.first { $0.name == name }!.format
        let scratch = try Scratch("unmaps")
        defer { scratch.cleanUp() }
        let summary = try importTrace(format, Fixture.path(name), to: scratch.path("p.pcap"))
        let persistent = summary.persistent.outcome.statistics
        let legacy = summary.legacy.outcome.statistics
        #expect(persistent.segments == legacy.segments)
        #expect(legacy.unmapOps == legacy.segments)
        #expect(persistent.unmapOps == summary.persistent.frontendTally.grants)
        #expect(persistent.unmapOps < legacy.unmapOps)
        #expect(persistent.unmapHypercalls < legacy.unmapHypercalls)
        #expect(summary.legacy.outcome.statistics.oracle?.persistentHits == 0)
    }

    /// A larger generated MSR trace: the headline effect, at scale.
    @Test func persistentNeedsAFractionOfTheUnmapsOnALargerTrace() throws {
        let scratch = try Scratch("large")
        defer { scratch.cleanUp() }
        var text = ""
        var time: UInt64 = 128_166_372_003_061_629
        var state: UInt64 = 7
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        for _ in 0..<1500 {
            time += next() % 20_000
            let size = [4096, 8192, 16384, 65536, 131_072][Int(next() % 5)]
            let kind = next() % 3 == 0 ? "Write" : "Read"
            text += "\(time),gen,0,\(kind),\((next() % 100_000) * 4096),\(size),\(next() % 40_000)\n"
        }
        let file = try scratch.write("gen.csv", text: text)
        let summary = try importTrace(.msr, file, to: scratch.path("gen.pcap"))
        #expect(!summary.failed)
        let persistent = summary.persistent.outcome.statistics
        let legacy = summary.legacy.outcome.statistics
        #expect(persistent.unmapOps * 20 < legacy.unmapOps, "\(persistent.unmapOps) against \(legacy.unmapOps)")
        #expect(persistent.unmapHypercalls * 20 < legacy.unmapHypercalls)
        #expect(summary.written.frontendTally.depthPeak > 1)
    }

    /// gzip is told by its magic bytes and reads as the same records.
    @Test func gzipGivesTheSameRecording() throws {
        let scratch = try Scratch("gzip")
        defer { scratch.cleanUp() }
        let plain = try importTrace(.msr, Fixture.path("msr.csv"), to: scratch.path("plain.pcap"))
        let compressed = try importTrace(.msr, Fixture.path("msr.csv.gz"), to: scratch.path("gz.pcap"))
        #expect(!plain.isCompressed && compressed.isCompressed)
        #expect(try bytes(of: scratch.path("plain.pcap")) == bytes(of: scratch.path("gz.pcap")))
    }

    /// Each fixture's conversion, checked against what its lines say.
    @Test func fioVersion2Conversion() throws {
        let scratch = try Scratch("fio2")
        defer { scratch.cleanUp() }
        let out = scratch.path("f.pcap")
        let summary = try importTrace(.fio, Fixture.path("fio-v2.log"), to: out)
        let tally = summary.written
        #expect(summary.survey.devices == ["/dev/vdb", "/dev/vdc"])
        #expect(summary.survey.trims == [true, false])
        #expect(tally.skipped == [.header: 1, .fileAction: 6, .wait: 2, .zeroLength: 1, .smallTrim: 1])
        // read 1000 3000, write 49152 45057 and read 12345 678 do not start and end on sectors.
        #expect(tally.widened == 3)
        // wait 1500 µs, then 250 µs: 1.75 ms, one whole millisecond ticked.
        #expect(tally.tickedMilliseconds == 1)
        let ring = try requests(out)
        // read 1000 3000: bytes 1000..<4000 are sectors 1...7 of the first page.
        let unaligned = try #require(ring.first { $0.sector == 1 && $0.operation == 0 })
        #expect(unaligned.segments.map { "\($0.firstSect)-\($0.lastSect)" } == ["1-7"])
        // read 8192 1048576: 256 pages from sector 16, as 23 requests of 11 pages and one of 3.
        let big = ring.filter { $0.vbd == 0 && $0.operation == 0 && $0.sector >= 16 && $0.sector < 16 + 2048 }
        #expect(big.map(\.segments.count) == Array(repeating: 11, count: 23) + [3])
        #expect(big.map(\.sector) == (0..<24).map { 16 + UInt64($0) * 88 })
        // write 49152 45057 on vdc: 89 sectors from 96 (one byte into the 89th): 12 pages.
        let vdc = ring.filter { $0.vbd == 1 && $0.operation == 1 && $0.sector >= 96 }
        #expect(vdc.map(\.segments.count) == [11, 1])
        #expect(vdc.last?.segments.last.map { "\($0.firstSect)-\($0.lastSect)" } == "0-0")
        // trim 1048576 65536: a discard of 128 sectors from 2048; sync and datasync: flushes.
        #expect(ring.contains { $0.operation == 5 && $0.sector == 2048 && $0.nrSectors == 128 })
        #expect(ring.filter { $0.operation == 3 && $0.segments.isEmpty }.count == 2)
        #expect(tally.requests == ring.count)
        #expect(tally.segments == ring.reduce(0) { $0 + $1.segments.count })
    }

    @Test func fioVersion3KeepsTheClockInMicroseconds() throws {
        let scratch = try Scratch("fio3")
        defer { scratch.cleanUp() }
        let out = scratch.path("f.pcap")
        let summary = try importTrace(.fio, Fixture.path("fio-v3.log"), to: out)
        // From the first I/O at 120 µs to the last at 12 500 µs: 12.38 ms, 12 ticked.
        #expect(summary.written.tickedMilliseconds == 12)
        #expect(try tickedMilliseconds(out) == 12)
        #expect(summary.written.skipped[.wait] == 1)
        // write 511 2: bytes 511 and 512 straddle sectors 0 and 1.
        #expect(try requests(out).contains { $0.sector == 0 && $0.segments.map(\.lastSect) == [1] && $0.operation == 1 })
    }

    @Test func blkparseIssuedStreamWithCompletions() throws {
        let scratch = try Scratch("blkparse")
        defer { scratch.cleanUp() }
        let out = scratch.path("b.pcap")
        let summary = try importTrace(.blkparse, Fixture.path("blkparse.txt"), to: out)
        let tally = summary.written
        #expect(summary.survey.devices == ["8,0", "8,16"])
        // D events: WS 2048+8, R 4096+256, W 100+32 (8,16), FN, FWFS 9000+8 (a flush, then the write),
        // D 20000+2048, RA, RA, RM 70+3, W 300+1.
        #expect(tally.converted == 10)
        #expect(tally.flushes == 2 && tally.discards == 1)
        #expect(tally.skipped[.message] == 1)
        #expect(tally.skipped[.summary] == 11)
        // C R 123456 + 8 names nothing issued; C D 20000 + 2048 a discard, answered at once, never held.
        #expect(tally.skipped[.unmatchedCompletion] == 2)
        // Requests were held until their C event: several in flight at once. Every one
        // but the last (W 300 + 1, never completed) met its C, the FWFS flush with its write's.
        #expect(tally.frontendTally.depthPeak > 1)
        #expect(tally.completedAtEnd == 1)
        #expect(tally.earlyCompletions == 0)
        let ring = try requests(out)
        #expect(ring.allSatisfy { $0.hold == ($0.operation != 5) })
        // 256 sectors are 32 pages: 11 + 11 + 10.
        #expect(ring.filter { $0.sector >= 4096 && $0.sector < 4352 }.map(\.segments.count) == [11, 11, 10])
        // RM 70 + 3: sectors 70...72 are 6-7 of page 8 and 0-0 of page 9.
        #expect(ring.first { $0.sector == 70 }?.segments.map { "\($0.firstSect)-\($0.lastSect)" } == ["6-7", "0-0"])
    }

    @Test func blkparseQueuedStream() throws {
        let scratch = try Scratch("blkparseQ")
        defer { scratch.cleanUp() }
        let out = scratch.path("q.pcap")
        let summary = try importTrace(.blkparse, Fixture.path("blkparse.txt"), to: out) { $0.blkparseAction = .Q }
        // Q events: WS, R, W 100+16 (its merge M is another action), FWS + 0 (a flush), FWFS 9000+8, D.
        #expect(summary.written.converted == 6)
        // The merged completion C W 100 + 32 completes the queued W 100 + 16.
        #expect(!summary.failed)
        #expect(TraceRunner.replay(.file(path: out), variant: .fixed).verdict == .pass)
    }

    @Test func msrQueueDepthFollowsResponseTimes() throws {
        let scratch = try Scratch("msr")
        defer { scratch.cleanUp() }
        let traced = try importTrace(.msr, Fixture.path("msr.csv"), to: scratch.path("t.pcap"))
        #expect(traced.survey.devices == ["web,0", "web,1"])
        #expect(traced.written.frontendTally.depthPeak > 1)
        // 777 100 and 1113600 1536: 1113600 is on a sector, 777 is not; 45057 ends one byte in.
        #expect(traced.written.widened == 2)
        // 128166372004250000 − 128166372003061629 in 100 ns units, and the last completion 10 units later: 118.8 ms.
        #expect(traced.written.tickedMilliseconds == 118)
        let fixed = try importTrace(.msr, Fixture.path("msr.csv"), to: scratch.path("f.pcap")) { $0.queueDepth = .fixed(4) }
        #expect(fixed.written.frontendTally.depthPeak == 4)
        let one = try importTrace(.msr, Fixture.path("msr.csv"), to: scratch.path("o.pcap")) { $0.queueDepth = .fixed(1) }
        #expect(one.written.frontendTally.depthPeak == 1)
        #expect(try requests(scratch.path("o.pcap")).allSatisfy { !$0.hold })
        #expect(TraceRunner.replay(.file(path: scratch.path("f.pcap")), variant: .fixed).verdict == .pass)
    }

    @Test func deviceFilterAndDiskSize() throws {
        let scratch = try Scratch("device")
        defer { scratch.cleanUp() }
        let one = try importTrace(.spc, Fixture.path("spc.csv"), to: scratch.path("d.pcap")) { $0.device = "2" }
        #expect(one.survey.devices == ["2"])
        #expect(one.written.skipped[.otherDevice] == 10)
        // ASU 2 reaches sector 140 + 96 = 236: a disk of 240 sectors (a page's multiple).
        #expect(one.survey.diskSectors(vbd: 0, options: one.options) == 240)
        let small = try importTrace(.spc, Fixture.path("spc.csv"), to: scratch.path("s.pcap")) { $0.diskSectors = 100_000 }
        // ASU 0's five writes from sector 303567 on, and ASU 1's at 240840.
        #expect(small.written.skipped[.beyondDisk] == 6)
        let missing = try importError(.spc, try String(contentsOfFile: Fixture.path("spc.csv"), encoding: .utf8),
                                      scratch: scratch) { $0.device = "9" }
        #expect(missing?.message == "no I/O of device '9' in the trace")
    }

    @Test func theOtherFrontendIsWrittenWhenAsked() throws {
        let scratch = try Scratch("legacy")
        defer { scratch.cleanUp() }
        let out = scratch.path("l.pcap")
        let summary = try importTrace(.tencent, Fixture.path("tencent.csv"), to: out) { $0.frontend = .legacy }
        #expect(summary.written.frontend == .legacy && summary.compared.frontend == .persistent)
        let text = try dumpPcap(out)
        #expect(!text.contains("persistent=1"))
        #expect(text.contains("revoke"))
        #expect(TraceRunner.replay(.file(path: out), variant: .fixed).verdict == .pass)
    }

    /// A quirk that panics the backend (handle 0 taken for "not mapped", then
    /// BUG_ON on a hit): the import stops there, says so, and still writes
    /// the file, which replays to the same panic.
    @Test func aBackendPanicEndsTheRunButNotTheImport() throws {
        let scratch = try Scratch("panic")
        defer { scratch.cleanUp() }
        let out = scratch.path("p.pcap")
        let variant = try BackendVariant(name: "fixed+handle-zero-unmapped")
        let summary = try importTrace(.msr, Fixture.path("msr.csv"), to: out) { $0.variant = variant }
        #expect(summary.failed)
        #expect(summary.persistent.outcome.panicked)
        #expect(!summary.legacy.outcome.panicked)
        #expect(summary.persistent.records < summary.legacy.records)
        let report = TraceRunner.replay(.file(path: out), variant: variant)
        #expect(report.panicked)
    }

    /// With --indirect under a G2013 or G2018 backend, a record of more than
    /// 11 pages is one indirect request of up to 256 segments; smaller ones stay direct.
    @Test(arguments: [BackendVariant.g2013, .g2018]) func indirectRequestsFromG2013On(variant: BackendVariant) throws {
        let scratch = try Scratch("indirect-\(variant.name)")
        defer { scratch.cleanUp() }
        let out = scratch.path("i.pcap")
        let summary = try importTrace(.fio, Fixture.path("fio-v2.log"), to: out) {
            $0.variant = variant
            $0.indirect = true
        }
        #expect(!summary.failed, "\(summary.written.outcome.kept)")
        let events = try PcapTraceReader.readAll(path: out).map(\.kind)
        let indirect = events.compactMap { kind -> IndirectRequestEvent? in
            if case let .indirect(request) = kind { return request }
            return nil
        }
        // read 8192 1048576 (256 pages), write 512 45056 (12 pages), write 49152 45057 (12 pages),
        // write 2097152 131072 (32 pages).
        #expect(indirect.map(\.segments.count) == [256, 12, 12, 32])
        #expect(indirect.allSatisfy { $0.pages.count == 1 })
        #expect(summary.written.indirect == 4 && summary.written.splits == 0)
        #expect(TraceRunner.replay(.file(path: out), variant: variant).verdict == .pass)
        let again = scratch.path("j.pcap")
        _ = try importTrace(.fio, Fixture.path("fio-v2.log"), to: again) {
            $0.variant = variant
            $0.indirect = true
        }
        #expect(try bytes(of: out) == bytes(of: again))
        var options = ImportOptions(format: .fio)
        options.indirect = true
        #expect(options.problems == ["indirect requests need a G2013 or G2018 backend (linux-3.11, g2013, g2018, linux-5.10…): G2012's blkback has none"])
    }

    @Test func aG2013BackendRecordsToo() throws {
        let scratch = try Scratch("g2013")
        defer { scratch.cleanUp() }
        let out = scratch.path("g.pcap")
        let summary = try importTrace(.alibaba, Fixture.path("alibaba.csv"), to: out) { $0.variant = .g2013 }
        #expect(!summary.failed)
        #expect(TraceRunner.replay(.file(path: out), variant: .g2013).verdict == .pass)
    }
}
