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

    /// A held write's pages counted in and out as one list: repeats, pages
    /// beyond the dense range and segments with no page, against one-by-one counting.
    @Test func segmentListsCountLikeOneByOne() {
        func io(_ page: UInt64?) -> SegmentIO {
            SegmentIO(firstSect: 0, lastSect: 7, page: page.map(GuestPage.init), tokens: SIMD8())
        }
        let large = GuestPageCounts.denseLimit + 3
        let first = [io(5), io(5), io(nil), io(large), io(700)]
        let second = [io(5), io(large), io(9)]
        var listed = GuestPageCounts()
        var single = GuestPageCounts()
        listed.increment(pagesOf: first)
        listed.increment(pagesOf: second)
        for segment in first + second { if let page = segment.page { single.increment(page) } }
        let pages = [5, 9, 700, large, 6].map(GuestPage.init)
        for page in pages { #expect(listed.contains(page) == single.contains(page)) }
        #expect(listed.pagesCounted == 4 && single.pagesCounted == 4)
        listed.decrement(pagesOf: first)
        #expect(listed.pagesCounted == 3)   // 5 and the large page stay, held by the second list
        #expect(listed.contains(GuestPage(5)) && !listed.contains(GuestPage(700)))
        listed.decrement(pagesOf: second)
        #expect(listed.isEmpty)
    }
}
