import Backend
import Blkif
import FuzzSupport
import Foundation
import Harness
import TestSupport
import Testing
import Trace

@Suite struct FuzzEncoderTests {
    @Test func encodingATraceKeepsItsEventsAndSkipsExpectations() throws {
        var rawBytes = BlkifProtocol.native.encode(BlkifRequest(
            operation: 1, id: 2, sectorNumber: 0, segments: [BlkifSegment(gref: 5, firstSect: 0, lastSect: 7)]))
        rawBytes[5] = 0xAA  // padding
        let hex = rawBytes.map { String(format: "%02x", $0) }.joined()
        let text = """
            xenblk-trace 1
            frontend-key feature-persistent 1
            connect domid=7 protocol=x86_64 max-persistent=3 sectors=4096
            grant gref=5..20
            grant gref=100 ro domid=9
            fail map gref=5 times=2 status=bad_page
            fail alloc nth=12
            request id=1 op=read sector=0 seg=5:0-7 seg=5:1-3 seg=300:8-2 nr=2
            request id=77 op=discard sector=8 nr-sectors=100 hold
            request id=2 op=9 sector=2097151 seg=6:0-0 handle=3
            expect response id=1 status=error
            raw hex=\(hex)
            complete id=77
            revoke gref=5..6
            disconnect
            connect domid=7 protocol=x86_32 vbd=3
            disconnect vbd=3
            """
        let events = try TextTraceReader.parseAll(text: text, file: "t.trace").map(\.kind)
        let encoding = FuzzEncoder.encode(events)
        #expect(encoding.skipped.map(\.index) == [9])
        #expect(encoding.isExact())
        let decoded = FuzzDecoder.decode(encoding.bytes)
        var expected = events.map(FuzzEncoder.canonical)
        expected.remove(at: 9)
        #expect(decoded == expected)
    }

    /// Connected again on a live vbd goes through the connect-again choice, which
    /// can say only the vbd's own domain and protocol, a persistent=, and defaults.
    @Test func connectedAgainRoundTripsWhereTheChoiceCanSayIt() throws {
        let text = """
            xenblk-trace 1
            connect domid=3 protocol=x86_32 vbd=1 max-persistent=4
            grant gref=1
            request id=4 op=read sector=0 seg=1:0-7 vbd=1 hold
            connect domid=3 protocol=x86_32 persistent=0 vbd=1
            complete id=4 vbd=1
            connect domid=3 protocol=x86_32 vbd=1 sectors=8
            """
        let events = try TextTraceReader.parseAll(text: text, file: "t.trace").map(\.kind)
        let encoding = FuzzEncoder.encode(events)
        #expect(encoding.skipped.map(\.index) == [5])   // sectors=8 is beyond what the choice says
        let decoded = FuzzDecoder.decode(encoding.bytes)
        #expect(decoded == Array(events.prefix(5)))
    }

    @Test func eventsOutsideTheDomainAreReported() throws {
        let text = """
            xenblk-trace 1
            frontend-key backend-quirk whatever
            connect domid=7
            complete id=5
            """
        let events = try TextTraceReader.parseAll(text: text, file: "t.trace").map(\.kind)
        let encoding = FuzzEncoder.encode(events)
        #expect(encoding.skipped.map(\.index) == [0, 2])
        #expect(!encoding.isExact())
    }

    /// The conformance suite seeds the corpus: a trace in the decoder's domain
    /// keeps its verdict under fixed when it goes through the fuzz format.
    @Test func conformanceTracesKeepTheirVerdictThroughTheFuzzFormat() throws {
        let files = Repository.traceFiles()
        var exact = 0
        for file in files {
            let source = try TextTraceReader.open(path: file.path)
            var reader = source
            var kinds: [TraceEventKind] = []
            while let event = try reader.next() { kinds.append(event.kind) }
            let encoding = FuzzEncoder.encode(kinds)
            // Expectations that name a violation under fixed make the original fail on purpose.
            let expectsUnderFixed = kinds.contains {
                if case .expect(.violation(_, let backend), _) = $0 { return backend == nil || backend == "fixed" }
                return false
            }
            guard encoding.isExact(), !expectsUnderFixed else { continue }
            exact += 1
            let before = TraceRunner.replay(.file(path: file.path), variant: .fixed)
            let after = replay(FuzzDecoder.decode(encoding.bytes))
            #expect(after.traceError == nil, "\(file.lastPathComponent)")
            // Dropping the expectations can only turn an `expect` failure into a pass.
            let beforeVerdict = before.failingViolations.allSatisfy { $0.violation.check == .expect }
                && before.traceError == nil && before.missingExpectedChecks.isEmpty
            #expect((after.verdict == .pass) == beforeVerdict,
                    "\(file.lastPathComponent): \(before.verdict) before, \(after.verdict) after: \(after.failingViolations.first?.violation.description ?? "")")
        }
        if !files.isEmpty { #expect(exact > 0) }
    }
}
