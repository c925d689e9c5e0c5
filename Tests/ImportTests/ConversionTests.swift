@testable import Import
import Recording
import Testing

@Suite struct ConversionTests {
    @Test func readsAndWritesWidenTrimsNarrow() {
        #expect(SectorRange.widened(offset: 1000, length: 3000) == SectorRange(start: 1, end: 8, adjusted: true))
        #expect(SectorRange.widened(offset: 4096, length: 4096) == SectorRange(start: 8, end: 16, adjusted: false))
        #expect(SectorRange.widened(offset: 511, length: 2) == SectorRange(start: 0, end: 2, adjusted: true))
        #expect(SectorRange.narrowed(offset: 1000, length: 3000) == SectorRange(start: 2, end: 7, adjusted: true))
        #expect(SectorRange.narrowed(offset: 100, length: 300)?.count == 0)
        #expect(SectorRange.widened(offset: .max, length: 1) == nil)
    }

    /// Segments follow the disk's 4 KiB blocks: partial first and last pages, 11 to a request.
    @Test func splittingFollowsPages() {
        func shapes(_ start: UInt64, _ end: UInt64) -> [[String]] {
            var result: [[String]] = []
            RequestSplitter.split(SectorRange(start: start, end: end, adjusted: false), operation: .read, maxSegments: 11) { plan in
                result.append(plan.segments.map { "\($0.first)-\($0.last)" })
            }
            return result
        }
        #expect(shapes(3, 4) == [["3-3"]])
        #expect(shapes(6, 10) == [["6-7", "0-1"]])
        #expect(shapes(0, 88) == [Array(repeating: "0-7", count: 11)])
        #expect(shapes(0, 89) == [Array(repeating: "0-7", count: 11), ["0-0"]])
        #expect(shapes(5, 5 + 8 * 11) == [["5-7"] + Array(repeating: "0-7", count: 10), ["0-4"]])
        var sectors: [UInt64] = []
        RequestSplitter.split(SectorRange(start: 5, end: 200, adjusted: false), operation: .write, maxSegments: 11) { sectors.append($0.sector) }
        #expect(sectors == [5, 88, 176])
        #expect(RequestSplitter.requestCount(SectorRange(start: 5, end: 200, adjusted: false), maxSegments: 11) == 3)
    }

    /// The ticks carry the remainder: their sum is the elapsed time, rounded down once.
    @Test func theClockCarriesTheRemainder() {
        var clock = TraceClock()
        var ticks: [UInt64] = []
        for time: UInt64 in [5_000_000_000, 5_000_600_000, 5_001_200_000, 5_001_900_000, 4_000_000_000, 5_010_000_001] {
            ticks.append(clock.advance(to: time))
        }
        #expect(ticks == [0, 0, 1, 0, 0, 9])
        #expect(clock.tickedMilliseconds == 10)
    }

    @Test func decimalsScaleExactly() {
        func scaled(_ text: String, _ digits: Int) -> UInt64? {
            Array(text.utf8).withUnsafeBufferPointer { LineFields.scaledDecimal($0, fractionDigits: digits) }
        }
        #expect(scaled("0.000002000", 9) == 2000)
        #expect(scaled("1538323204.5", 9) == 1_538_323_204_500_000_000)
        #expect(scaled("12", 9) == 12_000_000_000)
        #expect(scaled("0.1234567891", 9) == 123_456_789)
        #expect(scaled("1.2.3", 9) == nil)
        #expect(scaled(".", 9) == nil)
        #expect(scaled("99999999999", 9) == nil)
    }

    /// Buckets merge in pairs when full: bounded, and the totals kept.
    @Test func theSeriesStaysBounded() {
        var series = GrantSeries(capacity: 8)
        for record in 1...1000 {
            series.add(grantsHeld: record % 50, segments: record * 3, mapOps: record, unmapHypercalls: record / 10)
        }
        #expect(series.buckets.count <= 8)
        #expect(series.width == 128)
        #expect(series.buckets.first?.firstRecord == 1)
        #expect(series.buckets.last?.lastRecord == 1000)
        #expect(series.buckets.reduce(0) { $0 + $1.segments } == 3000)
        #expect(series.buckets.reduce(0) { $0 + $1.hits } == 2000)
        #expect(series.buckets.last?.unmapHypercalls == 100)
        for (a, b) in zip(series.buckets, series.buckets.dropFirst()) { #expect(a.lastRecord + 1 == b.firstRecord) }
    }

    @Test func thePlotIsThreePanelsAndDeterministic() throws {
        var persistent = GrantSeries(capacity: 16)
        var legacy = GrantSeries(capacity: 16)
        for record in 1...100 {
            persistent.add(grantsHeld: min(record, 40), segments: record * 4, mapOps: min(record, 40), unmapHypercalls: 0)
            legacy.add(grantsHeld: 0, segments: record * 4, mapOps: record * 4, unmapHypercalls: record)
        }
        let plot = GrantPlot(title: "a <b> & c", persistent: persistent, legacy: legacy)
        let svg = plot.svg
        #expect(svg == GrantPlot(title: "a <b> & c", persistent: persistent, legacy: legacy).svg)
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.contains("a &lt;b&gt; &amp; c"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 6)
        #expect(svg.contains("Unmap hypercalls so far: 0 persistent, 100 legacy"))
        #expect(GrantPlot.ticks(upTo: 352) == [0, 100, 200, 300, 400])
        #expect(GrantPlot.ticks(upTo: 1).map(GrantPlot.number) == ["0", "0.2", "0.4", "0.6", "0.8", "1"])
        #expect(GrantPlot.short(1_500_000) == "1.5M")
    }
}
