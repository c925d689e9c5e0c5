import Testing
import Blkif
import FakeXen

@Suite struct KernelHeapTests {
    @Test func readAndWriteOfALiveObject() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let address = try #require(heap.allocate(Widget(value: 7), owner: owner))
        #expect(heap.read(address) == Widget(value: 7))
        heap.write(address, Widget(value: 8))
        heap.modify(address) { $0.value += 1 }
        #expect(heap.read(address) == Widget(value: 9))
        #expect(heap.peek(address) == Widget(value: 9))
        #expect(heap.isLive(address))
        #expect(heap.liveCount == 1)
        #expect(xen.log.entries.isEmpty)
    }

    @Test func readAndWriteAfterFreeAreObservedNotCrashed() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let address = try #require(heap.allocate(Widget(value: 7), owner: owner))
        heap.free(address)
        #expect(!heap.isLive(address))
        #expect(heap.peek(address) == nil)
        #expect(xen.log.drain().isEmpty)
        // Soon after free a read sees the stale object, as C would.
        #expect(heap.read(address) == Widget(value: 7))
        var log = xen.log.drain()
        #expect(log.count == 1)
        #expect(log.first?.isUseAfterFree == true)
        #expect(log.first?.memoryAccess == .read)
        heap.write(address, Widget(value: 8))
        log = xen.log.drain()
        #expect(log.count == 1 && log.first?.memoryAccess == .write)
        // The write lands in the stale copy, never in a live object.
        #expect(heap.read(address) == Widget(value: 8))
        #expect(heap.liveCount == 0)
    }

    @Test func longFreedMemoryReadsAsPoison() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let old = try #require(heap.allocate(Widget(value: 1), owner: owner))
        heap.free(old)
        for value in 0..<5000 {
            let address = try #require(heap.allocate(Widget(value: UInt64(value)), owner: owner))
            heap.free(address)
        }
        #expect(heap.read(old) == .poisoned)
        #expect(xen.log.drain().filter(\.isUseAfterFree).count == 1)
    }

    @Test func doubleFreeIsObserved() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let address = try #require(heap.allocate(Widget(value: 7), owner: owner))
        heap.free(address)
        heap.free(address)
        let log = xen.log.drain()
        #expect(log.count == 1)
        #expect(log.first?.isDoubleFree == true)
    }

    @Test func freeOfAnAddressNeverHandedOutIsObserved() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let other = xen.kernel.makeHeap(of: Widget.self, name: "other")
        let address = try #require(other.allocate(Widget(value: 1), owner: owner))
        heap.free(address)
        let log = xen.log.drain()
        #expect(log.count == 1 && log.first?.memoryAccess == .free)
        #expect(other.isLive(address))
        _ = heap.read(KernelAddress(12))
        #expect(xen.log.drain().first?.isUseAfterFree == true)
    }

    @Test func addressesAreNeverReused() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let other = xen.kernel.makeHeap(of: Widget.self, name: "other")
        var seen: Set<KernelAddress> = []
        for value in 0..<200 {
            let address = try #require(heap.allocate(Widget(value: UInt64(value)), owner: owner))
            #expect(seen.insert(address).inserted)
            if value % 3 != 0 { heap.free(address) }
            let elsewhere = try #require(other.allocate(Widget(value: 0), owner: owner))
            #expect(seen.insert(elsewhere).inserted)
            other.free(elsewhere)
        }
    }

    @Test func liveAllocationsListWhatAnOwnerStillHolds() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let someoneElse = AllocationOwner(domid: guest, vbd: 1)
        let a = try #require(heap.allocate(Widget(value: 1), owner: owner))
        let b = try #require(heap.allocate(Widget(value: 2), owner: owner))
        _ = try #require(heap.allocate(Widget(value: 3), owner: someoneElse))
        let page = try #require(xen.kernel.pages.allocate(owner: owner))
        _ = xen.kernel.pages.reserve(count: 2)
        #expect(xen.kernel.liveAllocations(of: owner) == ["widget at \(a)", "widget at \(b)", "page \(page)"])
        heap.free(a)
        xen.kernel.pages.free(page)
        #expect(xen.kernel.liveAllocations(of: owner) == ["widget at \(b)"])
        #expect(xen.kernel.liveAllocations(of: someoneElse).count == 1)
        #expect(xen.kernel.liveAllocations(of: AllocationOwner(domid: 3, vbd: 0)).isEmpty)
    }

    @Test func everyKindOfBadAddressIsToldApart() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        let first = try #require(heap.allocate(Widget(value: 1), owner: owner))
        let second = try #require(heap.allocate(Widget(value: 2), owner: owner))
        let inside = KernelAddress(first.value + 8)
        let pastTheEnd = KernelAddress(second.value + 64)
        let below = KernelAddress(first.value - 64)
        // Misaligned but within what the heap handed out reads as freed memory,
        // as it always did; past the end or below the heap is a wild pointer.
        #expect(heap.read(inside) == .poisoned)
        #expect(heap.read(pastTheEnd) == .poisoned)
        #expect(heap.read(below) == .poisoned)
        heap.free(inside)
        heap.free(pastTheEnd)
        #expect(xen.log.drain() == [
            .useAfterFree(address: inside.description, access: .read, what: "freed widget"),
            .useAfterFree(address: pastTheEnd.description, access: .read, what: "wild pointer into widget"),
            .useAfterFree(address: below.description, access: .read, what: "wild pointer into widget"),
            .doubleFree(address: inside.description, what: "widget"),
            .useAfterFree(address: pastTheEnd.description, access: .free, what: "wild pointer into widget"),
        ])
        // None of it touched the live objects.
        #expect(heap.peek(first) == Widget(value: 1) && heap.peek(second) == Widget(value: 2))
        // The address past the end becomes a real one once handed out.
        #expect(try #require(heap.allocate(Widget(value: 3), owner: owner)) == pastTheEnd)
        #expect(heap.read(pastTheEnd) == Widget(value: 3))
        #expect(xen.log.drain().isEmpty)
    }

    @Test func quarantineKeepsTheLatestFreesAndForgetsTheOldest() throws {
        let xen = FakeXen()
        let heap = xen.kernel.makeHeap(of: Widget.self, name: "widget")
        var addresses: [KernelAddress] = []
        for value in 0..<4_100 {
            addresses.append(try #require(heap.allocate(Widget(value: UInt64(value)), owner: owner)))
        }
        // Free in reverse: the quarantine is in order of free, not of address.
        for address in addresses.reversed() { heap.free(address) }
        #expect(heap.liveCount == 0)
        // The 4 096 most recent frees (the lowest addresses) read stale...
        #expect(heap.read(addresses[0]) == Widget(value: 0))
        #expect(heap.read(addresses[4_095]) == Widget(value: 4_095))
        // ...the 4 earliest read poison, and a write to them lands nowhere.
        #expect(heap.read(addresses[4_096]) == .poisoned)
        heap.write(addresses[4_099], Widget(value: 1))
        #expect(heap.read(addresses[4_099]) == .poisoned)
        // A stale slot takes the write.
        heap.write(addresses[7], Widget(value: 77))
        #expect(heap.read(addresses[7]) == Widget(value: 77))
        let log = xen.log.drain()
        #expect(log.count == 7 && log.allSatisfy { $0 == .useAfterFree(address: $0.address!, access: $0.memoryAccess!, what: "freed widget") })
        // A second free of a forgotten address is still a double free.
        heap.free(addresses[4_099])
        #expect(xen.log.drain() == [.doubleFree(address: addresses[4_099].description, what: "widget")])
    }
    @Test func bugIsObservedAsAPanicAndThrown() {
        let xen = FakeXen()
        #expect(throws: KernelPanic(message: "boom")) { try xen.kernel.bugOn(true, "boom") }
        #expect(throws: Never.self) { try xen.kernel.bugOn(false, "never") }
        xen.kernel.alert("look")
        #expect(xen.log.drain() == [.panic(message: "boom"), .alert(message: "look")])
    }
}

@Suite struct PageAllocatorTests {
    @Test func allocateAndFree() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages
        let page = try #require(pages.allocate(owner: owner))
        #expect(pages.isLive(page))
        #expect(pages.liveCount == 1)
        pages.free(page)
        #expect(!pages.isLive(page))
        #expect(pages.liveCount == 0)
        #expect(xen.log.entries.isEmpty)
    }

    @Test func doubleFreeIsObserved() throws {
        let xen = FakeXen()
        let page = try #require(xen.kernel.pages.allocate(owner: owner))
        xen.kernel.pages.free(page)
        xen.kernel.pages.free(page)
        let log = xen.log.drain()
        #expect(log.count == 1 && log.first?.isDoubleFree == true)
    }

    @Test func freeingAReservedOrUnknownPageIsObserved() throws {
        let xen = FakeXen()
        let reserved = xen.kernel.pages.reserve(count: 1)[0]
        xen.kernel.pages.free(reserved)
        #expect(xen.kernel.pages.isLive(reserved))
        xen.kernel.pages.free(PageFrame(0xdead_beef_0000))
        let log = xen.log.drain()
        #expect(log.count == 2)
        #expect(log.allSatisfy { $0.memoryAccess == .free })
    }

    @Test func badFreesAreToldApartAsBefore() throws {
        let xen = FakeXen()
        let pages = xen.kernel.pages
        let reserved = pages.reserve(count: 1)[0]
        let page = try #require(pages.allocate(owner: owner))
        pages.free(page)
        pages.free(page)
        pages.free(reserved)
        // Below the first frame counts as handed out (and freed), as it always did.
        pages.free(PageFrame(5))
        pages.free(PageFrame(page.number + 1))
        #expect(xen.log.drain() == [
            .doubleFree(address: page.description, what: "page"),
            .useAfterFree(address: reserved.description, access: .free, what: "a reserved page"),
            .doubleFree(address: PageFrame(5).description, what: "page"),
            .useAfterFree(address: PageFrame(page.number + 1).description, access: .free, what: "a page never allocated"),
        ])
        #expect(pages.isLive(reserved) && !pages.isLive(page) && !pages.isLive(PageFrame(page.number + 1)))
        #expect(pages.liveCount == 0)
    }

    @Test func framesAreNeverReused() throws {
        let xen = FakeXen()
        var seen: Set<PageFrame> = []
        for round in 0..<100 {
            let page = try #require(xen.kernel.pages.allocate(owner: owner))
            #expect(seen.insert(page).inserted)
            if round % 2 == 0 { xen.kernel.pages.free(page) }
            for reserved in xen.kernel.pages.reserve(count: 1) { #expect(seen.insert(reserved).inserted) }
        }
    }

    @Test func liveAllocationsListPagesOfTheOwnerOnly() throws {
        let xen = FakeXen()
        let other = AllocationOwner(domid: otherGuest, vbd: 0)
        let a = try #require(xen.kernel.pages.allocate(owner: owner))
        let b = try #require(xen.kernel.pages.allocate(owner: other))
        _ = xen.kernel.pages.reserve(count: 4)
        #expect(xen.kernel.liveAllocations(of: owner) == ["page \(a)"])
        #expect(xen.kernel.liveAllocations(of: other) == ["page \(b)"])
        xen.kernel.pages.free(a)
        #expect(xen.kernel.liveAllocations(of: owner).isEmpty)
    }
}
