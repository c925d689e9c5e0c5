import Testing
import Blkif
import FakeXen

/// The count questions the oracle asks after every event must agree with the
/// list questions at every step, and the lists must be what a plain model of
/// the same operations says, in the same order.
@Suite struct CountTests {
    @Test(arguments: [1, 2] as [UInt64])
    func mappingCountsAlwaysEqualTheListsLengths(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let xen = FakeXen()
        let domains: [DomainID] = [1, 2, 7]
        let hostPages = xen.kernel.pages.reserve(count: 48)
        /// What the model says is mapped: handle to (domain, host page).
        var mapped: [GrantHandle: (domid: DomainID, page: PageFrame)] = [:]

        for _ in 0..<2_000 {
            let domid = domains.randomElement(using: &random)!
            let gref = GrantRef.random(in: 0..<24, using: &random)
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<3:
                xen.grants.grant(domid: domid, gref: gref, readOnly: false)
            case 3:
                xen.grants.revoke(domid: domid, gref: gref)
            case 4..<7:
                let page = hostPages.randomElement(using: &random)!
                if let result = xen.mapOne(page, gref, domid: domid), result.status == .okay {
                    #expect(mapped[result.handle] == nil)
                    mapped[result.handle] = (domid, page)
                }
            case 7..<9:
                guard let handle = mapped.keys.randomElement(using: &random) else { continue }
                #expect(xen.unmapOne(mapped[handle]!.page, handle).status == .okay)
                mapped[handle] = nil
            default:
                if Int.random(in: 0..<10, using: &random) == 0 { xen.grants.forgetDomain(domid) }
                // A stale or unknown handle changes nothing.
                let stale = GrantHandle.random(in: 0..<80, using: &random)
                if mapped[stale] == nil { #expect(xen.unmapOne(hostPages[0], stale).status == .badHandle) }
            }
            for domid in domains + [99] {
                let listed = xen.grants.liveMappings(of: domid)
                #expect(xen.grants.liveMappingCount(of: domid) == listed.count)
                let expected = mapped.filter { $0.value.domid == domid }.keys.sorted()
                #expect(listed.map(\.handle) == expected)
                #expect(listed.allSatisfy { $0.domid == domid && $0.hostPage == mapped[$0.handle]?.page })
            }
            #expect(xen.grants.liveMappingCount == mapped.count)
        }
    }

    @Test(arguments: [1, 2] as [UInt64])
    func allocationCountsAlwaysEqualTheListsLengths(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let xen = FakeXen()
        let widgets = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let gadgets = xen.kernel.makeHeap(of: Widget.self, name: "gadget")
        let owners = [owner, AllocationOwner(domid: guest, vbd: 1), AllocationOwner(domid: otherGuest, vbd: 0)]
        /// What the model says is live, in allocation order per allocator.
        var liveObjects: [(heap: KernelHeap<Widget>, address: KernelAddress, owner: AllocationOwner)] = []
        var livePages: [(frame: PageFrame, owner: AllocationOwner)] = []

        for step in 0..<1_500 {
            let who = owners.randomElement(using: &random)!
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<3:
                let heap = Bool.random(using: &random) ? widgets : gadgets
                let address = try #require(heap.allocate(Widget(value: UInt64(step)), owner: who))
                liveObjects.append((heap, address, who))
            case 3..<5 where !liveObjects.isEmpty:
                let freed = liveObjects.remove(at: Int.random(in: 0..<liveObjects.count, using: &random))
                freed.heap.free(freed.address)
            case 5..<7:
                livePages.append((try #require(xen.kernel.pages.allocate(owner: who)), who))
            case 7..<9 where !livePages.isEmpty:
                xen.kernel.pages.free(livePages.remove(at: Int.random(in: 0..<livePages.count, using: &random)).frame)
            default:
                // Failed frees and reservations charge nobody.
                if let freed = liveObjects.first { freed.heap.free(KernelAddress(freed.address.value + 8)) }
                xen.kernel.pages.free(PageFrame(1))
                _ = xen.kernel.pages.reserve(count: 1)
            }
            for who in owners {
                let listed = xen.kernel.liveAllocations(of: who)
                #expect(xen.kernel.liveAllocationCount(of: who) == listed.count)
                var expected: [String] = []
                for heap in [widgets, gadgets] {
                    for object in liveObjects where object.heap === heap && object.owner == who {
                        expected.append("\(heap.name) at \(object.address)")
                    }
                }
                for page in livePages where page.owner == who { expected.append("page \(page.frame)") }
                #expect(listed == expected)
            }
            #expect(widgets.liveCount + gadgets.liveCount == liveObjects.count)
            #expect(xen.kernel.pages.liveCount == livePages.count)
        }
    }
}
