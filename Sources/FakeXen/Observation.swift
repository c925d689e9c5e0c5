import Blkif

/// A kernel page frame: where a grant is mapped and what block I/O touches.
public struct PageFrame: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let number: UInt64
    public init(_ number: UInt64) { self.number = number }
    public static func < (a: Self, b: Self) -> Bool { a.number < b.number }
    public var description: String { "pfn 0x" + String(number, radix: 16) }
}

/// An address in the fake kernel heap. Never reused, so any access to a freed
/// address is told apart from an access to a live object.
public struct KernelAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
    public var description: String { "0x" + String(value, radix: 16) }
}

/// A guest's own page: what a grant gives access to.
public struct GuestPage: Hashable, Sendable, CustomStringConvertible {
    public let number: UInt64
    public init(_ number: UInt64) { self.number = number }
    public var description: String { "guest page \(number)" }
}

/// Who an allocation is charged to, so that teardown can ask "is anything of
/// this device still allocated?" the way kmemleak would.
public struct AllocationOwner: Hashable, Sendable, CustomStringConvertible {
    public let domid: DomainID
    public let vbd: UInt16
    public init(domid: DomainID, vbd: UInt16) { self.domid = domid; self.vbd = vbd }
    public var description: String { "domain \(domid) vbd \(vbd)" }
}

public enum MemoryAccess: String, Sendable { case read, write, free }

/// What the fake environment saw. The harness drains these after every
/// event and hands them to the oracle; nothing here judges, it only records.
public enum Observation: Hashable, Sendable {
    case mapBatch(MapBatch)
    case unmapBatch(UnmapBatch)
    case revoke(domid: DomainID, gref: GrantRef, refused: Bool)
    case allocationFailed(what: String)
    /// Any touch of freed memory, including a second free.
    case useAfterFree(address: String, access: MemoryAccess, what: String)
    case doubleFree(address: String, what: String)
    case panic(message: String)
    /// Block I/O through a page with no live mapping, or a device write into a read-only one.
    case accessUnmapped(page: PageFrame, detail: String)
    case unmapInUse(handle: GrantHandle, page: PageFrame)
    /// A kernel log line at alert level (`pr_alert`).
    case alert(message: String)
    /// The backend pushed a response: what it wrote into the ring slot.
    case responseSlot(ResponseSlotWrite)
    /// The backend read bytes of a guest page through a mapping.
    case guestRead(GuestByteRead)
    /// A guest write armed by the trace landed, right after the read before it.
    case armedWriteLanded(ArmedWrite)
}

/// One read of guest-shared bytes by the backend.
public struct GuestByteRead: Hashable, Sendable {
    public let domid: DomainID
    public let gref: GrantRef
    public let page: GuestPage
    public let offset: Int
    public let count: Int
    public init(domid: DomainID, gref: GrantRef, page: GuestPage, offset: Int, count: Int) {
        self.domid = domid
        self.gref = gref
        self.page = page
        self.offset = offset
        self.count = count
    }
    /// The bytes read, as offsets in the page.
    public var range: Range<Int> { offset..<offset + count }
}

/// One `GNTTABOP_map_grant_ref` hypercall and what it answered.
public struct MapBatch: Hashable, Sendable {
    public let ops: [MapOp]
    /// nil when the hypercall failed as a whole: no operation was performed.
    public let results: [MapResult]?
}

public struct MapOp: Hashable, Sendable, CustomStringConvertible {
    public var hostPage: PageFrame
    public var flags: GrantMapFlags
    public var gref: GrantRef
    public var domid: DomainID
    public init(hostPage: PageFrame, flags: GrantMapFlags, gref: GrantRef, domid: DomainID) {
        self.hostPage = hostPage
        self.flags = flags
        self.gref = gref
        self.domid = domid
    }
    public var description: String { "map gref \(gref) of domain \(domid) [\(flags)]" }
}

public struct MapResult: Hashable, Sendable {
    public var status: GrantStatus
    /// Meaningful only when `status == .okay`.
    public var handle: GrantHandle
    public init(status: GrantStatus, handle: GrantHandle) { self.status = status; self.handle = handle }
}

public struct UnmapBatch: Hashable, Sendable {
    public let ops: [UnmapOp]
    public let results: [UnmapResult]
}

public struct UnmapOp: Hashable, Sendable {
    public var hostPage: PageFrame
    public var handle: GrantHandle
    public init(hostPage: PageFrame, handle: GrantHandle) { self.hostPage = hostPage; self.handle = handle }
}

public struct UnmapResult: Hashable, Sendable {
    public var status: GrantStatus
    /// What the handle mapped, when the unmap succeeded.
    public var unmapped: GrantMapping?
}

/// Collects observations in order; drained by whoever runs the environment.
public final class ObservationLog {
    /// The entries in a value whose methods do the whole drain, so that a
    /// drain (after every event) is one access to this object, not three.
    // Unchecked exclusivity: every access is one append of a value built
    // before it, one read, or one drain, none of which calls out of the
    // buffer, so no two accesses can overlap; drained after every event.
    @exclusivity(unchecked) private var buffer = ObservationBuffer()
    public init() {}
    public var entries: [Observation] { buffer.entries }
    public func record(_ observation: Observation) { buffer.entries.append(observation) }
    public func drain() -> [Observation] { buffer.drain() }
}

struct ObservationBuffer {
    var entries: [Observation] = []
    /// What the previous drain handed out. Once its caller has let go of it,
    /// the next drain reuses it (and its capacity) for new entries: an event
    /// that observed something costs no allocation.
    private var drained: [Observation] = []

    mutating func drain() -> [Observation] {
        // Most events observe nothing: the shared empty array.
        guard !entries.isEmpty else { return [] }
        swap(&entries, &drained)
        entries.removeAll(keepingCapacity: true)
        return drained
    }
}

/// `BUG()` fired: the host is down. Thrown so the backend unwinds at once.
public struct KernelPanic: Error, Hashable, Sendable, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { "kernel BUG: \(message)" }
}
