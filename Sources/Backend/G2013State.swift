import Blkif
import FakeXen

/// `struct grant_page`: one grant entry of a G2013 request slot. Slots are
/// reused request after request and an entry is overwritten only when a map
/// reaches it, so what a request leaves in it stays for the next (which is
/// what XSA-365's stale pointers are made of). Zeroed memory at connect:
/// no page, no grant, handle **0**.
struct GrantEntry {
    var gref: GrantRef = 0
    var page: PageFrame?
    /// `persistent_gnt`: the persistent grant the entry uses, if any.
    var grant: KernelAddress?
    var handle: GrantHandle = 0
}

/// `struct pending_req` of G2013: the request's fields, its 256 segment
/// entries and its one indirect-page entry, and the bios in flight.
struct G2013Slot {
    var id: UInt64 = 0
    /// `req_operation`: the operation the response carries (an indirect
    /// request's `indirect_op`).
    var operation: UInt8 = 0
    var nrPages = 0
    var entries = Array(repeating: GrantEntry(), count: G2013State.maxIndirectSegments)
    /// `indirect_pages[0]`: blkback reads one page of descriptors.
    var indirectEntries = [GrantEntry()]
    var bios: [BioID] = []
}

/// What a G2013 connection keeps beyond the tree (docs/generations.md, "State").
struct G2013State {
    /// `MAX_INDIRECT_SEGMENTS`.
    static let maxIndirectSegments = 256
    /// `XEN_BLKIF_REQS`: request slots per connection.
    static let slotCount = 32
    /// `LRU_INTERVAL`, in jiffies (milliseconds here).
    static let lruInterval: UInt64 = 100
    /// `LRU_PERCENT_CLEAN`.
    static let lruPercentClean = 5

    /// `free_pages`: a stack, the page put back last is taken first.
    var pool: [PageFrame] = []
    /// `persistent_gnt_in_use`.
    var inUse = 0
    /// `vbd.overflow_max_grants`.
    var overflow = false
    /// `next_lru`: zeroed at allocation.
    var nextLRU: UInt64 = 0
    var slots: [G2013Slot] = []
    /// `pending_free`: LIFO, as in G2012.
    var freeSlots: [Int] = []
    /// Slots whose I/O is in flight, oldest first.
    var inFlight: [Int] = []

    /// A connection's fresh state; G2012 connections keep the empty one.
    static func connected() -> G2013State {
        var state = G2013State()
        state.slots = Array(repeating: G2013Slot(), count: slotCount)
        state.freeSlots = Array((0..<slotCount).reversed())
        return state
    }

    mutating func takeSlot() -> Int? { freeSlots.popLast() }
    mutating func releaseSlot(_ slot: Int) { freeSlots.append(slot) }

    /// The oldest in-flight slot whose request has this id.
    func oldestInFlight(id: UInt64) -> Int? { inFlight.first { slots[$0].id == id } }
}

/// A G2013 request as the ring slot gives it.
enum G2013Request {
    case direct(BlkifRequest)
    case indirect(BlkifIndirectRequest)

    var id: UInt64 {
        switch self {
        case .direct(let request): request.id
        case .indirect(let request): request.id
        }
    }

    /// The ring's operation byte.
    var operation: UInt8 {
        switch self {
        case .direct(let request): request.operation
        case .indirect: BlkifOperation.indirect.rawValue
        }
    }
}
