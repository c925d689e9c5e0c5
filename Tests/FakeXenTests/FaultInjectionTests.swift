import Testing
import Blkif
import FakeXen

@Suite struct FaultInjectionTests {
    private func setUp(grefs: ClosedRange<GrantRef> = 1...8, pages count: Int = 8) -> (FakeXen, [PageFrame]) {
        let xen = FakeXen()
        for gref in grefs { xen.grants.grant(domid: guest, gref: gref, readOnly: false) }
        return (xen, xen.kernel.pages.reserve(count: count))
    }

    @Test func grefFaultsFailThatGrefTimesOverInTheOrderArmed() throws {
        let (xen, pages) = setUp()
        xen.faults.failMap(gref: 5, times: 2, status: .eagain)
        xen.faults.failMap(gref: 5, times: 1, status: .noSpace)
        // Other grefs are untouched.
        #expect(xen.mapOne(pages[0], 6)?.status == .okay)
        #expect(xen.mapOne(pages[1], 5)?.status == .eagain)
        #expect(xen.mapOne(pages[1], 5)?.status == .eagain)
        #expect(!xen.faults.isIdle)
        #expect(xen.mapOne(pages[1], 5)?.status == .noSpace)
        #expect(xen.faults.isIdle)
        let last = try #require(xen.mapOne(pages[1], 5))
        #expect(last.status == .okay)
        // Failed maps took no handle: gref 6 has 0, this one 1.
        #expect(last.handle == 1)
        #expect(xen.grants.liveMappingCount == 2)
    }

    @Test func aGrefFaultHitsEveryOpOfThatGrefInABatch() throws {
        let (xen, pages) = setUp()
        xen.faults.failMap(gref: 3, times: 2, status: .generalError)
        let results = try #require(xen.grants.map([mapOp(pages[0], 3), mapOp(pages[1], 4), mapOp(pages[2], 3), mapOp(pages[3], 3)]))
        #expect(results.map(\.status) == [.generalError, .okay, .generalError, .okay])
        #expect(xen.grants.liveMappingCount == 2)
    }

    @Test func nthMapFaultsCountFromOneAcrossBatches() throws {
        let (xen, pages) = setUp()
        xen.faults.failMap(nth: 1, status: .badPage)
        xen.faults.failMap(nth: 3, status: .permissionDenied)
        let first = try #require(xen.grants.map([mapOp(pages[0], 1), mapOp(pages[1], 2)]))
        #expect(first.map(\.status) == [.badPage, .okay])
        let second = try #require(xen.grants.map([mapOp(pages[2], 3), mapOp(pages[3], 4)]))
        #expect(second.map(\.status) == [.permissionDenied, .okay])
        #expect(xen.faults.isIdle)
    }

    @Test func nthMapFaultsCountOnlyFromWhenTheyAreArmed() throws {
        let (xen, pages) = setUp()
        #expect(xen.mapOne(pages[0], 1)?.status == .okay)
        #expect(xen.mapOne(pages[1], 2)?.status == .okay)
        xen.faults.failMap(nth: 2, status: .generalError)
        #expect(xen.mapOne(pages[2], 3)?.status == .okay)
        #expect(xen.mapOne(pages[3], 4)?.status == .generalError)
        #expect(xen.mapOne(pages[3], 4)?.status == .okay)
    }

    @Test func anInjectedMapFaultWinsOverTheRealOutcome() throws {
        let (xen, pages) = setUp()
        xen.faults.failMap(nth: 1, status: .noDeviceSpace)
        // Gref 99 is unknown; the injected status is what the op answers.
        #expect(xen.mapOne(pages[0], 99)?.status == .noDeviceSpace)
        #expect(xen.mapOne(pages[0], 99)?.status == .badGntref)
    }

    @Test func allocationFaultsCountRecordsAndPagesTogether() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        xen.faults.failAllocation(nth: 2)
        xen.faults.failAllocation(nth: 4)
        #expect(heap.allocate(Widget(value: 1), owner: owner) != nil)      // 1
        #expect(xen.kernel.pages.allocate(owner: owner) == nil)              // 2
        #expect(xen.kernel.pages.allocate(owner: owner) != nil)              // 3
        #expect(heap.allocate(Widget(value: 2), owner: owner) == nil)       // 4
        #expect(heap.allocate(Widget(value: 3), owner: owner) != nil)       // 5
        #expect(xen.faults.isIdle)
        let failures = xen.log.drain().filter(\.isAllocationFailed)
        #expect(failures.count == 2)
        // A failed allocation charges nothing.
        #expect(xen.kernel.liveAllocations(of: owner).count == 3)
    }

    @Test func reservingPagesNeverFailsNorCountsAsAnAllocation() throws {
        let xen = FakeXen()
        xen.faults.failAllocation(nth: 1)
        #expect(xen.kernel.pages.reserve(count: 3).count == 3)
        #expect(xen.kernel.pages.allocate(owner: owner) == nil)
    }

    @Test func hypercallFaultsFailTheWholeBatchAndMapNothing() throws {
        let (xen, pages) = setUp()
        xen.faults.failHypercall(nth: 2)
        #expect(xen.grants.map([mapOp(pages[0], 1)])?.first?.status == .okay)
        #expect(xen.grants.map([mapOp(pages[1], 2), mapOp(pages[2], 3)]) == nil)
        #expect(xen.grants.liveMappingCount == 1)
        #expect(xen.grants.mapping(hostPage: pages[1]) == nil)
        // Nothing was mapped, so the grants can go.
        #expect(xen.grants.revoke(domid: guest, gref: 2))
        #expect(xen.grants.map([mapOp(pages[2], 3)])?.first?.status == .okay)
        #expect(xen.faults.isIdle)
    }

    @Test func opsOfAFailedHypercallAreNotPerformedSoDoNotConsumeMapFaults() throws {
        let (xen, pages) = setUp()
        xen.faults.failHypercall(nth: 1)
        xen.faults.failMap(nth: 1, status: .badPage)
        xen.faults.failMap(gref: 2, times: 1, status: .eagain)
        #expect(xen.grants.map([mapOp(pages[0], 2)]) == nil)
        #expect(xen.mapOne(pages[0], 2)?.status == .badPage)
        // Both faults matched that op, and both were consumed by it.
        #expect(xen.faults.isIdle)
        #expect(xen.mapOne(pages[0], 2)?.status == .okay)
    }

    @Test func twoNthFaultsOnTheSameOperationFireOnce() throws {
        let xen = FakeXen()
        xen.faults.failAllocation(nth: 1)
        xen.faults.failAllocation(nth: 1)
        #expect(xen.kernel.pages.allocate(owner: owner) == nil)
        #expect(xen.kernel.pages.allocate(owner: owner) != nil)
        #expect(xen.faults.isIdle)
    }
}
