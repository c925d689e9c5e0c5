import Blkif
import FakeXen

/// A small heap object for exercising `KernelHeap` on its own.
struct Widget: Poisonable, Equatable {
    var value: UInt64
    static var poisoned: Widget { Widget(value: 0x6b6b_6b6b_6b6b_6b6b) }
}

let guest: DomainID = 1
let otherGuest: DomainID = 2
let owner = AllocationOwner(domid: guest, vbd: 0)

func mapOp(_ page: PageFrame, _ gref: GrantRef, domid: DomainID = guest, readOnly: Bool = false) -> MapOp {
    MapOp(hostPage: page, flags: readOnly ? [.hostMap, .readOnly] : .hostMap, gref: gref, domid: domid)
}

extension FakeXen {
    /// Maps one grant on its own hypercall and returns its result.
    func mapOne(_ page: PageFrame, _ gref: GrantRef, domid: DomainID = guest, readOnly: Bool = false) -> MapResult? {
        grants.map([mapOp(page, gref, domid: domid, readOnly: readOnly)])?.first
    }

    func unmapOne(_ page: PageFrame, _ handle: GrantHandle) -> UnmapResult {
        grants.unmap([UnmapOp(hostPage: page, handle: handle)])[0]
    }
}

extension Observation {
    var isUseAfterFree: Bool { if case .useAfterFree = self { true } else { false } }
    var isDoubleFree: Bool { if case .doubleFree = self { true } else { false } }
    var isAccessUnmapped: Bool { if case .accessUnmapped = self { true } else { false } }
    var isUnmapInUse: Bool { if case .unmapInUse = self { true } else { false } }
    var isAllocationFailed: Bool { if case .allocationFailed = self { true } else { false } }
    var mapBatch: MapBatch? { if case .mapBatch(let batch) = self { batch } else { nil } }
    var unmapBatch: UnmapBatch? { if case .unmapBatch(let batch) = self { batch } else { nil } }
    var memoryAccess: MemoryAccess? { if case .useAfterFree(_, let access, _) = self { access } else { nil } }
}
