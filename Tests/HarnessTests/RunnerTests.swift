import Backend
import Foundation
import Harness
import Oracle
import TestSupport
import Testing
import Trace

@Suite struct RunnerTests {
    @Test func aCleanTraceUnderFixedPasses() throws {
        let report = try replay("""
            connect domid=3 persistent=1
            grant gref=1..4
            request id=1 op=write sector=0 seg=1:0-7 seg=2:0-7
            request id=2 op=read sector=0 seg=3:0-7 seg=4:0-7
            expect persistent=4
            request id=3 op=read sector=0 seg=1:0-7 seg=2:0-3 hold
            complete id=3
            expect response id=3 status=okay
            disconnect
            """)
        #expect(report.verdict == .pass, "\(report.violations)")
        #expect(report.statistics.requests == 3)
        // Four new persistent maps, then hits only; nothing unmapped until the teardown batch.
        #expect(report.statistics.mapOps == 4)
        #expect(report.statistics.unmapOps == 4)
        #expect(report.statistics.unmapHypercalls == 1)
        #expect(report.statistics.oracle?.persistentHits == 2)
    }

    @Test func withoutPersistenceEverySegmentIsMappedAndUnmapped() throws {
        let report = try replay("""
            connect domid=3 persistent=0
            grant gref=1..2
            request id=1 op=write sector=0 seg=1:0-7 seg=2:0-7
            request id=2 op=read sector=0 seg=1:0-7 seg=2:0-7
            expect persistent=0
            """)
        #expect(report.verdict == .pass, "\(report.violations)")
        #expect(report.statistics.mapOps == 4)
        #expect(report.statistics.unmapOps == 4)
    }

    @Test func aMismatchedExpectationIsTheExpectCheck() throws {
        let report = try replay("""
            connect domid=3 persistent=1
            grant gref=1
            request id=1 op=read sector=0 seg=1:0-7
            expect response id=1 status=error
            expect persistent=5
            """)
        #expect(report.verdict == .fail)
        #expect(report.violations.map(\.violation.check) == [.expect, .expect])
        #expect(report.violations[0].violation.position == .line(5, column: 1))
        #expect(report.violations[0].violation.seen == "okay")
        #expect(report.violations[1].violation.seen == "persistent=1")
    }

    @Test func theOracleFindsADefectThroughTheModel() throws {
        // A duplicate gref whose new persistent map fails: the seed's second
        // segment keeps using the freed record.
        let trace = """
            connect domid=7 persistent=1
            grant gref=5
            fail map gref=5 status=general_error
            request id=1 op=read sector=0 seg=5:0-7 seg=5:0-7
            expect response id=1 status=error
            """
        #expect(try replay(trace).verdict == .pass)
        let broken = try replay(trace, backend: "fixed+duplicate-dangles")
        #expect(broken.verdict == .fail)
        #expect(broken.checksSeen.contains(.useAfterFree))
        #expect(broken.violations.first?.violation.position == .line(5, column: 1))
    }

    @Test func expectedViolationsPassOnlyUnderTheirBackend() throws {
        let trace = """
            expect violation use-after-free backend=fixed+duplicate-dangles
            connect domid=7 persistent=1
            grant gref=5
            fail map gref=5 status=general_error
            request id=1 op=read sector=0 seg=5:0-7 seg=5:0-7
            """
        #expect(try replay(trace, backend: "fixed+duplicate-dangles").verdict == .pass)
        #expect(try replay(trace, backend: "fixed").verdict == .pass)
        // An expectation that is never met fails the trace.
        let unmet = try replay("expect violation panic\nconnect domid=1\n")
        #expect(unmet.verdict == .fail)
        #expect(unmet.missingExpectedChecks == [.panic])
    }

    @Test func violationsBeforeTheExpectedOneStillFail() throws {
        // The expect mismatch on line 4 comes before the expected use after free.
        let report = try replay("""
            expect violation use-after-free
            connect domid=7 persistent=1
            grant gref=5
            expect persistent=3
            fail map gref=5 status=general_error
            request id=1 op=read sector=0 seg=5:0-7 seg=5:0-7
            """, backend: "fixed+duplicate-dangles")
        #expect(report.verdict == .fail)
        #expect(report.failingViolations.map(\.violation.check) == [.expect])
    }

    /// A backend name that names no backend never applies (the format allows
    /// it), and the report says so; a real name of another backend does not.
    @Test func anExpectationNamingNoBackendIsWarnedOf() throws {
        let report = try replay("""
            expect violation panic backend=fixed+duplcate-dangles
            expect violation panic backend=seed
            connect domid=1
            """)
        #expect(report.verdict == .pass)
        #expect(report.expectedChecks.isEmpty)
        #expect(report.warnings.map(\.description) == [
            "inline.trace:2:1: expect violation names no backend, so it never applies: unknown quirk "
                + "'duplcate-dangles' in backend 'fixed+duplcate-dangles'; expected one of "
                + Quirk.allCases.map(\.rawValue).joined(separator: ", "),
        ])
    }

    @Test(arguments: [
        ("request id=1 op=read sector=0 seg=1:0-7", 2, "vbd 0 is not connected"),
        ("connect domid=1\nconnect domid=2", 3,
         "vbd 0 is connected for domain 1 with protocol native; a connect again must name the same domain and protocol (or disconnect it first)"),
        ("connect domid=1\ncomplete id=4", 3, "id 4 is not held on vbd 0"),
        ("connect domid=1\nraw hex=0001", 3, "raw request is 2 bytes; protocol native takes 112"),
        ("connect domid=1\ndisconnect vbd=2", 3, "vbd 2 is not connected"),
        ("connect domid=1\ngrant gref=0..70000", 3, "a range of 70001 grefs; at most 65536 in one event"),
    ])
    func semanticTraceErrorsNameTheLine(text: String, line: Int, message: String) throws {
        let report = try replay(text)
        #expect(report.verdict == .error)
        #expect(report.traceError == TraceError(file: "inline.trace", position: .line(line, column: 1), message: message))
    }

    @Test func holdingMoreThanTheRingIsATraceError() throws {
        var text = "connect domid=1 persistent=1\ngrant gref=1\n"
        for id in 1...33 { text += "request id=\(id) op=read sector=0 seg=1:0-0 hold\n" }
        let report = try replay(text)
        #expect(report.traceError?.message == "more than 32 requests held on vbd 0: the ring has 32 slots")
        #expect(report.traceError?.position == .line(36, column: 1))
    }

    @Test func aRequestOnAFullRingIsATraceError() throws {
        var text = "connect domid=1 persistent=1\ngrant gref=1\n"
        for id in 1...32 { text += "request id=\(id) op=read sector=0 seg=1:0-0 hold\n" }
        text += "request id=99 op=read sector=0 seg=1:0-0\n"
        let report = try replay(text)
        #expect(report.traceError?.message == "the ring of vbd 0 is full: 32 requests are held; complete one first")
    }

    @Test func expectationsAfterAPanicStillCount() throws {
        let report = try replay("""
            connect domid=1 persistent=1
            grant gref=1
            fail hypercall nth=1
            request id=1 op=read sector=0 seg=1:0-7
            expect violation panic backend=fixed+bug-on-hypercall-error
            """, backend: "fixed+bug-on-hypercall-error")
        #expect(report.verdict == .pass)
        #expect(report.expectedChecks == [.panic])
    }

    @Test func aPanicStopsTheReplay() throws {
        let report = try replay("""
            connect domid=1 persistent=1
            grant gref=1
            fail hypercall nth=1
            request id=1 op=read sector=0 seg=1:0-7
            request id=2 op=read sector=0 seg=1:0-7
            """, backend: "fixed+bug-on-hypercall-error")
        #expect(report.panicked)
        #expect(report.checksSeen == [.panic])
        #expect(report.statistics.requests == 1)
    }

    @Test func theTraceEndTearsDownWhatIsConnected() throws {
        let report = try replay("""
            connect domid=1 persistent=1
            grant gref=1..3
            request id=1 op=read sector=0 seg=1:0-7 seg=2:0-7 seg=3:0-7
            """, backend: "fixed+teardown-keeps-pages")
        #expect(report.checksSeen == [.teardown])
        #expect(report.violations.first?.violation.position == .line(4, column: 1))
    }

    @Test func theOracleCanBeSwitchedOff() throws {
        let report = try replay("""
            connect domid=1 persistent=1
            grant gref=1..3
            request id=1 op=read sector=0 seg=1:0-7 seg=2:0-7 seg=3:0-7
            """, backend: "fixed+teardown-keeps-pages", oracle: false)
        #expect(report.verdict == .pass)
        #expect(report.statistics.oracle == nil)
        #expect(report.statistics.mapOps == 3)
    }

    @Test func sameInputSameReport() throws {
        let text = """
            connect domid=4 persistent=1 max-persistent=2
            grant gref=1..6
            request id=1 op=write sector=8 seg=1:0-7 seg=2:1-3 seg=3:0-7 seg=4:0-0
            request id=2 op=read sector=8 seg=5:0-7 seg=1:0-7 hold
            request id=3 op=read sector=8 seg=6:0-7 hold
            complete id=3
            """
        let first = try replay(text, backend: "seed")
        let second = try replay(text, backend: "seed")
        #expect(first.violations == second.violations)
        #expect(first.statistics == second.statistics)
    }
}
