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
