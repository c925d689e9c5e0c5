import Backend
import FuzzSupport
import Minimizer
import TestSupport
import Testing
import Trace

@Suite struct TraceMinimizerTests {
    @Test func aNoisyFailureShrinksToItsCore() throws {
        let text = """
            xenblk-trace 1
            connect domid=7 persistent=1 max-persistent=8 sectors=4096
            grant gref=1..12
            request id=1 op=write sector=0 seg=1:0-7 seg=2:0-7
            request id=2 op=read sector=16 seg=3:0-7 hold
            request id=3 op=read sector=0 seg=1:0-7
            complete id=2
            fail map gref=9 status=bad_page
            request id=4 op=write sector=8 seg=4:0-7 seg=9:0-7 seg=9:2-3 seg=5:0-7
            request id=5 op=read sector=8 seg=4:0-7
            disconnect
            """
        let events = try TextTraceReader.parseAll(text: text, file: "t.trace").map(\.kind)
        let variant = try BackendVariant(name: "fixed+duplicate-dangles")
        let minimizer = TraceMinimizer(variant: variant, isolatesCrashes: false)
        let original = minimizer.firstFailure(events)
        let result = try minimizer.minimize(events)
        #expect(result.outcome == original.violation.map { .violation($0.check) })
        #expect(result.events.count < events.count)
        #expect(result.events.count <= 4, "\(TextTracePrinter.render(result.events))")
        #expect(minimizer.outcome(result.events) == result.outcome)
        // Clean under fixed, as the defect is the quirk's.
        #expect(replay(result.events).verdict == .pass)
    }

    @Test func aPassingTraceIsRefused() throws {
        let events = try TextTraceReader.parseAll(text: "xenblk-trace 1\nconnect domid=1\n", file: "t").map(\.kind)
        #expect(throws: TraceMinimizer.Failure.passes(backend: "fixed")) {
            try TraceMinimizer(variant: .fixed, isolatesCrashes: false).minimize(events)
        }
    }

    @Test func decodedFuzzFindingsMinimizeUnderEachQuirk() throws {
        // Random inputs until each quirk has a failing one; each must shrink and keep its check.
        let inputs = randomFuzzInputs(count: 400, seed: 9)
        for variant in BackendVariant.matrix where !variant.quirks.isEmpty {
            let minimizer = TraceMinimizer(variant: variant, maxReplays: 5000, isolatesCrashes: false)
            guard let failing = inputs.lazy.map({ FuzzDecoder.decode($0) })
                .first(where: { minimizer.firstFailure($0).violation != nil }) else { continue }
            let result = try minimizer.minimize(failing)
            #expect(result.events.count <= failing.count)
            #expect(minimizer.outcome(result.events) == result.outcome, "\(variant)")
        }
    }
}
