import Backend
import Blkif
import Foundation
import Harness
import Recording
import TestSupport
import Testing
import Trace
import TracePcap

/// The recorder's bytes before the frontend machinery was split from the
/// seeded workload (FrontendSession and WorkloadDriver), pinned: a change
/// to either that alters what `record` writes fails here.
@Suite struct RecorderBytesTests {
    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        bytes.reduce(0xcbf2_9ce4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }

    @Test(arguments: [
        (Workload(requests: 300), 51289, 0x6738_7e41_74a7_227b as UInt64),
        (Workload(seed: 7, requests: 400, frontend: .legacy, queueDepth: 8), 235_809, 0x84f8_6d00_54f8_4594),
        (Workload(seed: 3, requests: 500, segments: 11...11, sectorPattern: .random, queueDepth: 32, reconnectEvery: 120,
                  protocolName: .x86_32), 149_866, 0x7401_7550_17fa_e908),
    ])
    func recordWritesTheBytesItAlwaysWrote(_ workload: Workload, _ size: Int, _ digest: UInt64) throws {
        let scratch = try Scratch("pinned")
        defer { scratch.cleanUp() }
        let path = scratch.path("r.pcap")
        _ = try WorkloadRecorder.record(workload, to: path)
        let written = try bytes(of: path)
        #expect(written.count == size)
        #expect(Self.fnv1a(written) == digest)
    }
}

@Suite struct FrontendSessionTests {
    /// Two vbds, one frontend: each has its own ids and its own pool; a page
    /// freed on one is never reused on the other.
    @Test func eachVbdHasItsOwnPool() throws {
        let scratch = try Scratch("session")
        defer { scratch.cleanUp() }
        let path = scratch.path("s.pcap")
        let writer = try PcapTraceWriter(path: path)
        let session = FrontendSession(frontend: .persistent, protocolName: .native, domid: 3, sink: writer)
        try session.connect(vbd: 0, sectors: 1024)
        try session.connect(vbd: 5, sectors: 1024, discard: true)
        let pages = [PlannedRequest.Segment(first: 0, last: 7), PlannedRequest.Segment(first: 0, last: 3)]
        let a = try session.issue(PlannedRequest(operation: .write, sector: 0, segments: pages), vbd: 0, hold: false)
        let b = try session.issue(PlannedRequest(operation: .read, sector: 8, segments: pages), vbd: 5, hold: true)
        #expect(a == 0 && b == 0)   // ids are per ring
        #expect(session.inFlightCount(vbd: 5) == 1 && session.inFlightCount(vbd: 0) == 0)
        try session.complete(id: b, vbd: 5)
        try session.issue(PlannedRequest(operation: .read, sector: 0, segments: pages), vbd: 0, hold: false)
        try session.issue(PlannedRequest(operation: .discard(sectors: 16), sector: 0), vbd: 5, hold: false)
        try session.issue(PlannedRequest(operation: .flush, sector: 0), vbd: 5, hold: false)
        #expect(session.persistentGrants == 4)
        try session.disconnect(vbd: 0)
        try session.disconnect(vbd: 5)
        try writer.close()
        // Four pages granted in all: two per vbd, reused within it.
        #expect(session.tally.grants == 4 && session.tally.revokes == 4)
        #expect(session.tally.responses == 5 && session.tally.failedResponses == 0)
        let outcome = session.outcome()
        #expect(outcome.count == 0, "\(outcome.kept)")
        #expect(outcome.statistics.unmapOps == 4)
        let report = TraceRunner.replay(.file(path: path), variant: .fixed)
        #expect(report.verdict == .pass, "\(report.violations)")
    }

    /// A held request the backend answers at once (it fails validation)
    /// keeps its ring slot and id until its `complete`, as the trace format
    /// counts held requests; its page comes back at the answer.
    @Test func aHeldRequestAnsweredEarlyWaitsForItsComplete() throws {
        let scratch = try Scratch("early")
        defer { scratch.cleanUp() }
        let path = scratch.path("e.pcap")
        let writer = try PcapTraceWriter(path: path)
        let session = FrontendSession(frontend: .persistent, protocolName: .native, domid: 2, sink: writer)
        try session.connect(vbd: 0, sectors: 64)
        let bad = PlannedRequest(operation: .read, sector: 0, segments: [.init(first: 5, last: 2)])
        let id = try session.issue(bad, vbd: 0, hold: true)
        #expect(session.tally.failedResponses == 1)
        #expect(session.inFlightCount(vbd: 0) == 1)
        let good = try session.issue(PlannedRequest(operation: .write, sector: 8, segments: [.init(first: 0, last: 7)]),
                                     vbd: 0, hold: true)
        #expect(good != id)
        // The failed request's page went back to the pool: the write reused it.
        #expect(session.tally.grants == 1)
        try session.complete(id: id, vbd: 0)
        #expect(session.inFlightCount(vbd: 0) == 1)
        try session.complete(id: good, vbd: 0)
        #expect(session.inFlightCount(vbd: 0) == 0)
        // Ids come back last freed first.
        #expect(try session.issue(bad, vbd: 0, hold: false) == good)
        try session.disconnect(vbd: 0)
        try writer.close()
        let report = TraceRunner.replay(.file(path: path), variant: .fixed)
        #expect(report.verdict == .pass, "\(report.violations) \(String(describing: report.traceError))")
    }

    /// The counting sink numbers events as a file would, and keeps none.
    @Test func aDiscardingSinkCountsPackets() throws {
        let sink = DiscardingSink(path: "memory")
        let session = FrontendSession(frontend: .legacy, protocolName: .x86_32, domid: 1, sink: sink)
        try session.connect(vbd: 0, sectors: 64)
        try session.issue(PlannedRequest(operation: .write, sector: 0, segments: [.init(first: 2, last: 5)]), vbd: 0, hold: false)
        try session.disconnect(vbd: 0)
        // header, connect, grant, request, expect response, revoke, expect persistent, disconnect
        #expect(sink.packetCount == 8)
        #expect(session.tally.grants == 1 && session.tally.revokes == 1)
    }
}
