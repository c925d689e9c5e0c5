import Testing
import Blkif
@testable import FakeXen

@Suite struct BioSlotTests {
    /// A completed bio's slot is reused; its old id must not complete the bio now in it.
    @Test func aStaleIdCompletesNothing() throws {
        let xen = FakeXen()
        let device = xen.attachDisk(vbd: 0, sectors: 64)
        let pages = xen.kernel.pages.reserve(count: 2)
        xen.grants.grant(domid: 1, gref: 1, readOnly: false)
        let handle = try #require(xen.grants.map([MapOp(hostPage: pages[0], flags: .hostMap, gref: 1, domid: 1)])?.first).handle
        let first = device.submit(.write, sector: 0, segments: [BioSegment(page: pages[0], firstSect: 0, lastSect: 7)])
        device.complete(first)
        let second = device.submit(.write, sector: 8, segments: [BioSegment(page: pages[0], firstSect: 0, lastSect: 7)])
        #expect(second != first)
        device.complete(first)
        #expect(device.inFlightCount == 1)
        _ = xen.log.drain()
        xen.grants.unmap([UnmapOp(hostPage: pages[0], handle: handle)])
        #expect(xen.log.drain().contains { $0.isUnmapInUse }, "the second bio still uses the page")
        device.complete(second)
        #expect(device.inFlightCount == 0)
    }

    /// Whole pages move as one vector when they fit in a block, sector by
    /// sector when they straddle two; both must read back what a plain map of
    /// sectors holds.
    @Test func pagesMoveTheSameOnAndAcrossBlockEdges() {
        let disk = Ramdisk(sectors: 4096)
        var model: [UInt64: UInt64] = [:]
        let starts: [UInt64] = [0, 3, 500, 504, 505, 508, 511, 512, 1016, 1020, 2047]
        for (round, start) in starts.enumerated() {
            for (first, last) in [(0, 7), (2, 5), (0, 0), (7, 7)] {
                var page = SIMD8<UInt64>()
                for lane in 0..<8 { page[lane] = UInt64(round * 1000 + first * 100 + lane) }
                disk.write(from: page, pageSectors: first...last, to: start)
                for lane in first...last { model[start + UInt64(lane - first)] = page[lane] }
            }
        }
        for start in starts {
            var page = SIMD8<UInt64>(repeating: 0xFFFF)
            disk.read(into: &page, pageSectors: 0...7, from: start)
            for lane in 0..<8 {
                let sector = start + UInt64(lane)
                #expect(page[lane] == model[sector] ?? Ramdisk.initialToken(sector: sector), "sector \(sector)")
            }
        }
        // A page read from a block never written reads the initial tokens.
        var fresh = SIMD8<UInt64>()
        disk.read(into: &fresh, pageSectors: 0...7, from: 3000)
        #expect(fresh == SIMD8((0..<8).map { Ramdisk.initialToken(sector: 3000 + UInt64($0)) }))
    }
}
