import Blkif
import FakeXen
import Testing
@testable import Oracle

@Suite struct DenseTablesTests {
    @Test func grefMapHoldsSmallAndLargeGrefs() {
        var map = GrefHandleMap()
        #expect(map.isEmpty)
        map.set(10, for: 1)
        map.set(20, for: 300)
        map.set(30, for: GrefHandleMap.denseLimit)
        map.set(40, for: .max)
        map.set(11, for: 1)
        #expect(map.count == 4)
        #expect(map[1] == 11 && map[300] == 20 && map[GrefHandleMap.denseLimit] == 30 && map[.max] == 40)
        #expect(map[2] == nil && map[299] == nil && map[GrefHandleMap.denseLimit - 1] == nil && map[.max - 1] == nil)
        #expect(map.dictionary == [1: 11, 300: 20, GrefHandleMap.denseLimit: 30, .max: 40])
        #expect(Set(map.grefs) == [1, 300, GrefHandleMap.denseLimit, .max])
        #expect(Set(map.values) == [11, 20, 30, 40])
    }

    @Test func pageCountsCountSmallAndLargePages() {
        var counts = GuestPageCounts()
        let small = GuestPage(5), large = GuestPage(GuestPageCounts.denseLimit + 7)
        counts.increment(small)
        counts.increment(small)
        counts.increment(large)
        #expect(counts.contains(small) && counts.contains(large) && !counts.contains(GuestPage(6)))
        counts.decrement(small)
        #expect(counts.contains(small))
        counts.decrement(small)
        counts.decrement(large)
        #expect(!counts.contains(small) && !counts.contains(large) && counts.isEmpty)
    }
}
