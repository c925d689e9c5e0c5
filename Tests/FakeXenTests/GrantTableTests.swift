import Testing
import Blkif
import FakeXen

@Suite struct GrantTableTests {
    @Test func handleZeroIsTheFirstHandleThenOneTwo() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 4)
        for gref in GrantRef(10)...13 { xen.grants.grant(domid: guest, gref: gref, readOnly: false) }
        let first = try #require(xen.mapOne(pages[0], 10))
        #expect(first.status == .okay)
        #expect(first.handle == 0)
        // A batch hands out the next handles in op order.
        let batch = try #require(xen.grants.map([mapOp(pages[1], 11), mapOp(pages[2], 12), mapOp(pages[3], 13)]))
        #expect(batch.map(\.status) == [.okay, .okay, .okay])
        #expect(batch.map(\.handle) == [1, 2, 3])
        let mapping = try #require(xen.grants.mapping(handle: 0))
        #expect(mapping.gref == 10 && mapping.domid == guest && mapping.hostPage == pages[0] && !mapping.readOnly)
        #expect(mapping.guestPage == xen.grants.guestPage(domid: guest, gref: 10))
        #expect(xen.grants.mapping(hostPage: pages[2])?.handle == 2)
        #expect(xen.grants.liveMappings(of: guest).map(\.handle) == [0, 1, 2, 3])
        #expect(xen.grants.liveMappingCount == 4)
    }

    @Test func guestPagesAreNeverReusedAndGoneOnesReadAsZero() throws {
        let xen = FakeXen()
        var seen: Set<UInt64> = []
        for round in 0..<300 {
            xen.grants.grant(domid: guest, gref: 5, readOnly: false)
            let page = try #require(xen.grants.guestPage(domid: guest, gref: 5))
            #expect(seen.insert(page.number).inserted)
            xen.memory.setToken(page, sector: 3, UInt64(round) + 1)
            #expect(xen.memory.token(page, sector: 3) == UInt64(round) + 1)
            #expect(xen.grants.revoke(domid: guest, gref: 5))
            #expect(xen.grants.guestPage(domid: guest, gref: 5) == nil)
            // A released page keeps no contents and takes no writes.
            xen.memory.setToken(page, sector: 3, 99)
            #expect(xen.memory.token(page, sector: 3) == 0)
        }
        #expect(seen.min() == 1)
        // A page never handed out reads as zero too.
        #expect(xen.memory.token(GuestPage(1_000_000), sector: 0) == 0)
        // Forgetting a domain releases its pages; another domain's stay.
        xen.grants.grant(domid: guest, gref: 1, readOnly: false)
        xen.grants.grant(domid: otherGuest, gref: 1, readOnly: false)
        let mine = try #require(xen.grants.guestPage(domid: guest, gref: 1))
        let theirs = try #require(xen.grants.guestPage(domid: otherGuest, gref: 1))
        xen.memory.setToken(mine, sector: 0, 5)
        xen.memory.setToken(theirs, sector: 0, 6)
        xen.grants.forgetDomain(guest)
        #expect(xen.grants.guestPage(domid: guest, gref: 1) == nil)
        #expect(xen.memory.token(mine, sector: 0) == 0 && xen.memory.token(theirs, sector: 0) == 6)
    }

    @Test func hugeGrefsAndDomainsWorkLikeSmallOnes() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 3)
        for gref in [GrantRef.max, 0, 1 << 20] { xen.grants.grant(domid: DomainID.max, gref: gref, readOnly: false) }
        #expect(xen.mapOne(pages[0], .max, domid: .max)?.status == .okay)
        #expect(xen.mapOne(pages[1], 0, domid: .max)?.status == .okay)
        #expect(xen.mapOne(pages[2], 1 << 20, domid: .max)?.status == .okay)
        #expect(xen.grants.liveMappings(of: .max).map(\.gref) == [.max, 0, 1 << 20])
        #expect(!xen.grants.revoke(domid: .max, gref: 1 << 20))
        #expect(xen.grants.mapping(handle: .max) == nil && xen.grants.mapping(hostPage: PageFrame(.max)) == nil)
        #expect(xen.unmapOne(pages[0], .max).status == .badHandle)
    }

    @Test func freedHandlesAreReusedLowestFirst() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 6)
        for gref in GrantRef(1)...6 { xen.grants.grant(domid: guest, gref: gref, readOnly: false) }
        for index in 0..<4 { #expect(xen.mapOne(pages[index], GrantRef(index + 1))?.handle == GrantHandle(index)) }
        // Free 2 and then 0: 0 comes back first although it was freed last.
        #expect(xen.unmapOne(pages[2], 2).status == .okay)
        #expect(xen.unmapOne(pages[0], 0).status == .okay)
        #expect(xen.mapOne(pages[4], 5)?.handle == 0)
        #expect(xen.mapOne(pages[0], 1)?.handle == 2)
        // No freed handle left: the next fresh one.
        #expect(xen.mapOne(pages[5], 6)?.handle == 4)
    }

    @Test func mapFailuresNameTheirCause() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 6)
        xen.grants.grant(domid: guest, gref: 1, readOnly: true)
        xen.grants.grant(domid: guest, gref: 2, readOnly: false)
        xen.grants.grant(domid: otherGuest, gref: 3, readOnly: false)
        #expect(xen.grants.revoke(domid: guest, gref: 2))
        let results = try #require(xen.grants.map([
            mapOp(pages[0], 99),                      // never granted
            mapOp(pages[1], 1),                       // writable map of a read-only grant
            mapOp(pages[2], 2),                       // revoked
            mapOp(pages[3], 3, domid: guest),         // gref of another domain
            mapOp(pages[4], 1, readOnly: true),       // read-only map of a read-only grant is fine
        ]))
        #expect(results.map(\.status) == [.badGntref, .generalError, .generalError, .badGntref, .okay])
        // A failure takes no handle: the one success got 0.
        #expect(results[4].handle == 0)
        #expect(xen.grants.liveMappingCount == 1)
        #expect(xen.grants.mapping(handle: 0)?.readOnly == true)
    }

    @Test func aMapWithoutHostMapOrIntoAnOccupiedPageFails() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 1)
        xen.grants.grant(domid: guest, gref: 1, readOnly: false)
        xen.grants.grant(domid: guest, gref: 2, readOnly: false)
        let noHostMap = try #require(xen.grants.map([MapOp(hostPage: pages[0], flags: [], gref: 1, domid: guest)]))
        #expect(noHostMap[0].status == .generalError)
        #expect(xen.mapOne(pages[0], 1)?.status == .okay)
        #expect(xen.mapOne(pages[0], 2)?.status == .generalError)
        #expect(xen.grants.liveMappingCount == 1)
    }

    @Test func unmapOfAStaleOrUnknownHandleIsBadHandle() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 1)
        xen.grants.grant(domid: guest, gref: 1, readOnly: false)
        let handle = try #require(xen.mapOne(pages[0], 1)).handle
        let first = xen.unmapOne(pages[0], handle)
        #expect(first.status == .okay)
        #expect(first.unmapped?.gref == 1)
        #expect(xen.unmapOne(pages[0], handle).status == .badHandle)
        #expect(xen.unmapOne(pages[0], 77).status == .badHandle)
        #expect(xen.unmapOne(pages[0], ~0).status == .badHandle)
        #expect(xen.grants.mapping(handle: handle) == nil)
        #expect(xen.grants.mapping(hostPage: pages[0]) == nil)
    }

    @Test func revokeIsRefusedWhileMappedAndAcceptedAfterUnmap() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 2)
        xen.grants.grant(domid: guest, gref: 5, readOnly: false)
        let a = try #require(xen.mapOne(pages[0], 5)).handle
        let b = try #require(xen.mapOne(pages[1], 5)).handle
        #expect(!xen.grants.revoke(domid: guest, gref: 5))
        #expect(xen.unmapOne(pages[0], a).status == .okay)
        // Still mapped once.
        #expect(!xen.grants.revoke(domid: guest, gref: 5))
        #expect(xen.unmapOne(pages[1], b).status == .okay)
        #expect(xen.grants.revoke(domid: guest, gref: 5))
        #expect(xen.grants.guestPage(domid: guest, gref: 5) == nil)
        #expect(xen.mapOne(pages[0], 5)?.status == .generalError)
        // Granting again gives a fresh page.
        let before = xen.grants.guestPage(domid: guest, gref: 6)
        #expect(before == nil)
        xen.grants.grant(domid: guest, gref: 5, readOnly: false)
        #expect(xen.grants.guestPage(domid: guest, gref: 5) != nil)
        #expect(xen.mapOne(pages[0], 5)?.status == .okay)
    }

    @Test func regrantingALiveGrantKeepsItsPage() throws {
        let xen = FakeXen()
        xen.grants.grant(domid: guest, gref: 5, readOnly: false)
        let page = try #require(xen.grants.guestPage(domid: guest, gref: 5))
        xen.memory.setToken(page, sector: 3, 42)
        xen.grants.grant(domid: guest, gref: 5, readOnly: true)
        #expect(xen.grants.guestPage(domid: guest, gref: 5) == page)
        #expect(xen.memory.token(page, sector: 3) == 42)
        let pages = xen.kernel.pages.reserve(count: 1)
        #expect(xen.mapOne(pages[0], 5)?.status == .generalError)
    }

    @Test func everyCallLandsInTheLog() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 2)
        xen.grants.grant(domid: guest, gref: 1, readOnly: false)
        _ = xen.log.drain()
        let ops = [mapOp(pages[0], 1), mapOp(pages[1], 2)]
        let results = try #require(xen.grants.map(ops))
        let unmapOps = [UnmapOp(hostPage: pages[0], handle: results[0].handle), UnmapOp(hostPage: pages[1], handle: 9)]
        let unmapResults = xen.grants.unmap(unmapOps)
        xen.grants.revoke(domid: guest, gref: 1)
        xen.grants.revoke(domid: guest, gref: 1)      // already revoked: still logged
        xen.faults.failHypercall(nth: 1)
        #expect(xen.grants.map(ops) == nil)
        xen.faults.failAllocation(nth: 1)
        #expect(xen.kernel.pages.allocate(owner: owner) == nil)
        let log = xen.log.drain()
        #expect(log.count == 6)
        guard log.count == 6 else { return }
        #expect(log[0].mapBatch?.ops == ops && log[0].mapBatch?.results == results)
        #expect(results.map(\.status) == [.okay, .badGntref])
        #expect(log[1].unmapBatch?.ops == unmapOps && log[1].unmapBatch?.results == unmapResults)
        #expect(unmapResults.map(\.status) == [.okay, .badHandle])
        #expect(log[2] == .revoke(domid: guest, gref: 1, refused: false))
        #expect(log[3] == .revoke(domid: guest, gref: 1, refused: false))
        #expect(log[4].mapBatch?.ops == ops)
        #expect(log[4].mapBatch.map { $0.results == nil } == true)
        #expect(log[5].isAllocationFailed)
        #expect(xen.log.drain().isEmpty)
    }

    @Test func aRefusedRevokeIsLoggedAsRefused() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages.reserve(count: 1)
        xen.grants.grant(domid: guest, gref: 1, readOnly: false)
        _ = try #require(xen.mapOne(pages[0], 1))
        _ = xen.log.drain()
        #expect(!xen.grants.revoke(domid: guest, gref: 1))
        #expect(xen.log.drain() == [.revoke(domid: guest, gref: 1, refused: true)])
    }

    @Test func mappingAFreedPageIsObservedAndFails() throws {
        let xen = FakeXen()
        let page = try #require(xen.kernel.pages.allocate(owner: owner))
        xen.kernel.pages.free(page)
        xen.grants.grant(domid: guest, gref: 1, readOnly: false)
        _ = xen.log.drain()
        #expect(xen.mapOne(page, 1)?.status == .badVirtAddr)
        #expect(xen.log.drain().contains { $0.isUseAfterFree })
        #expect(xen.grants.liveMappingCount == 0)
    }

    @Test func forgettingADomainDropsItsGrants() throws {
        let xen = FakeXen()
        xen.grants.grant(domid: guest, gref: 1, readOnly: false)
        xen.grants.grant(domid: otherGuest, gref: 1, readOnly: false)
        xen.grants.forgetDomain(guest)
        #expect(xen.grants.guestPage(domid: guest, gref: 1) == nil)
        #expect(xen.grants.guestPage(domid: otherGuest, gref: 1) != nil)
    }
}
