import TestSupport
import Testing
import Trace

@Suite struct RoundTripTests {
    /// print then parse gives back the events, for random canonical event lists.
    @Test func printThenParseIsIdentity() throws {
        let seed = testSeed(default: 0x7EA5_E001)
        print("RoundTripTests seed: \(seed) (set TRACE_TEST_SEED to replay another)")
        var generator = RandomEvents(seed: seed)
        for index in 0..<500 {
            let events = generator.textEvents(count: Int.random(in: 0...40, using: &generator.rng))
            let text = TextTracePrinter.render(events)
            let parsed = try TextTraceReader.parseAll(text: text, file: "random-\(index).trace")
            #expect(parsed.map(\.kind) == events, "case \(index) of seed \(seed):\n\(text)")
            #expect(parsed.map(\.position) == parsed.indices.map { .line($0 + 2, column: 1) })
            if parsed.map(\.kind) != events { break }
        }
    }
}
