import Backend
import Blkif
import Foundation
import Harness
import Recording
import TestSupport
import Testing
import Trace
import TracePcap

@Suite struct RecorderTests {
    static func record(_ workload: Workload, _ scratch: Scratch, _ name: String) throws -> (RecordingSummary, String) {
        let path = scratch.path(name)
        return (try WorkloadRecorder.record(workload, to: path), path)
    }

    /// The requests of a recording without their grefs: what I/O it does.
    static func io(_ path: String) throws -> [String] {
        try PcapTraceReader.readAll(path: path).compactMap { event in
            guard case let .request(request) = event.kind else { return nil }
            let shapes = request.segments.map { "\($0.firstSect)-\($0.lastSect)" }.joined(separator: ",")
            return "\(request.id) \(request.operation) \(request.sector) \(shapes) \(request.hold)"
        }
    }

    @Test func theSameSeedGivesTheSameBytes() throws {
        let scratch = try Scratch("det")
        defer { scratch.cleanUp() }
        let workload = Workload(seed: 42, requests: 400, frontend: .persistent, readFraction: 0.3, segments: 2...9,
                                sectorPattern: .random, queueDepth: 12, reconnectEvery: 150)
        let (_, a) = try Self.record(workload, scratch, "a.pcap")
        let (_, b) = try Self.record(workload, scratch, "b.pcap")
        #expect(try bytes(of: a) == bytes(of: b))
        var other = workload
        other.seed = 43
        let (_, c) = try Self.record(other, scratch, "c.pcap")
        #expect(try bytes(of: a) != bytes(of: c))
    }

    /// Same I/O, a fraction of the unmaps: the seed's headline effect.
    @Test func persistentAndLegacyDoTheSameIOWithFarFewerUnmaps() throws {
        let scratch = try Scratch("effect")
        defer { scratch.cleanUp() }
        var workload = Workload(seed: 5, requests: 1000, queueDepth: 8)
        workload.frontend = .persistent
        let (persistent, p) = try Self.record(workload, scratch, "p.pcap")
        workload.frontend = .legacy
        let (legacy, l) = try Self.record(workload, scratch, "l.pcap")
        #expect(try Self.io(p) == Self.io(l))
        #expect(persistent.statistics.requests == 1000 && legacy.statistics.requests == 1000)
        #expect(persistent.statistics.segments == legacy.statistics.segments)
        // Legacy maps and unmaps every segment; persistent only its pool, once.
        #expect(legacy.statistics.unmapOps == legacy.statistics.segments)
        #expect(persistent.statistics.unmapOps == persistent.frontend.poolPeak)
        #expect(persistent.frontend.poolPeak <= 8 * 11)
        #expect(persistent.statistics.oracle?.persistentHits == persistent.statistics.segments - persistent.frontend.poolPeak)
        for summary in [persistent, legacy] {
            #expect(summary.violationCount == 0, "\(summary.violations)")
            #expect(summary.frontend.failedResponses == 0)
            #expect(summary.frontend.responses == 1000)
        }
        #expect(legacy.frontend.grants == legacy.statistics.segments && legacy.frontend.revokes == legacy.frontend.grants)
    }

    /// Queue depth above one: requests are held and complete out of order;
    /// the pool of a full ring of 11-segment requests is a ring's worth (352).
    @Test func aFullRingOutOfOrder() throws {
        let scratch = try Scratch("ring")
        defer { scratch.cleanUp() }
        let workload = Workload(seed: 9, requests: 600, segments: 11...11, sectorPattern: .random, queueDepth: 32,
                                protocolName: .x86_32)
        let (summary, path) = try Self.record(workload, scratch, "r.pcap")
        #expect(summary.frontend.depthPeak == 32)
        #expect(summary.frontend.poolPeak == 352)
        #expect(summary.violationCount == 0, "\(summary.violations)")
        let events = try PcapTraceReader.readAll(path: path).map(\.kind)
        var issued: [UInt64] = []
        var completed: [UInt64] = []
        for kind in events {
            if case let .request(request) = kind { #expect(request.hold); issued.append(request.id) }
            if case let .complete(id, _) = kind { completed.append(id) }
        }
        #expect(completed.count == 600)
        // Completion order differs from issue order somewhere: out of order.
        #expect(completed != issued)
        #expect(Set(issued).isSubset(of: Set(0..<32)))
    }

    @Test func reconnectsRevokeThePoolAndStartAgain() throws {
        let scratch = try Scratch("reconnect")
        defer { scratch.cleanUp() }
        let workload = Workload(seed: 2, requests: 250, queueDepth: 4, reconnectEvery: 100)
        let (summary, path) = try Self.record(workload, scratch, "c.pcap")
        #expect(summary.frontend.connects == 3)
        let text = try dumpPcap(path)
        #expect(text.components(separatedBy: "\ndisconnect\n").count - 1 == 3)
        #expect(text.contains("expect persistent="))
        let report = TraceRunner.replay(.file(path: path), variant: .fixed)
        #expect(report.verdict == .pass, "\(report.violations)")
        #expect(report.statistics.requests == 250)
    }

    @Test func invalidWorkloadsAreRefused() throws {
        let scratch = try Scratch("invalid")
        defer { scratch.cleanUp() }
        for (workload, problem) in [
            (Workload(queueDepth: 33), "the queue depth must be within 1...32 (the ring's slots)"),
            (Workload(segments: 0...3), "segments per request must be within 1...11"),
            (Workload(readFraction: 2), "the read fraction must be within 0...1"),
        ] {
            #expect(throws: (any Error).self) { _ = try WorkloadRecorder.record(workload, to: scratch.path("x.pcap")) }
            #expect(workload.problems == [problem])
        }
    }

    /// The committed recordings: small, clean under fixed, and caught by quirks.
    @Test func committedRecordings() throws {
        let directory = Repository.root.appendingPathComponent("traces/recorded")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path))?.filter { $0.hasSuffix(".pcap") } ?? []
        #expect(names.count >= 5)
        for name in names.sorted() {
            let path = directory.appendingPathComponent(name).path
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            #expect(size < 1_000_000, "\(name) is \(size) bytes")
            let report = TraceRunner.replay(.file(path: path), variant: .fixed)
            #expect(report.verdict == .pass, "\(name): \(report.violations.prefix(3)) \(String(describing: report.traceError))")
        }
    }
}

@Suite struct RecordingRoundTripTests {
    /// A recording → text → pcap is byte for byte the same.
    @Test func pcapThroughTextKeepsTheBytes() throws {
        let scratch = try Scratch("bytes")
        defer { scratch.cleanUp() }
        var workload = Workload(seed: 11, requests: 300, queueDepth: 8, reconnectEvery: 120, protocolName: .x86_32)
        for frontend in Workload.Frontend.allCases {
            workload.frontend = frontend
            let recorded = scratch.path("\(frontend).pcap")
            _ = try WorkloadRecorder.record(workload, to: recorded)
            let text = try dumpPcap(recorded)
            let again = try throughPcap(text, file: "\(frontend)-again.trace", scratch: scratch)
            #expect(again == text)
            let rewritten = scratch.path("\(frontend)-rewritten.pcap")
            try writePcap(try TextTraceReader.parseAll(text: text, file: "t").map(\.kind), to: rewritten)
            #expect(try bytes(of: rewritten) == bytes(of: recorded))
        }
    }

}
