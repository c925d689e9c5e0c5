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
    var address: String? { if case .useAfterFree(let address, _, _) = self { address } else { nil } }
    var memoryAccess: MemoryAccess? { if case .useAfterFree(_, let access, _) = self { access } else { nil } }
}

/// A small seeded generator (SplitMix64), so that the randomised tests run
/// the same sequence every time and a failure can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
