import Blkif
import DequeModule

/// Objects that can stand in a poisoned heap slot: what a read of freed
/// memory gives back once the allocator has forgotten the object.
public protocol Poisonable {
    static var poisoned: Self { get }
}

/// The fake dom0 kernel: allocation with ENOMEM injection, `BUG()`, and the
/// bookkeeping that lets teardown ask what a device still holds.
public final class FakeKernel {
    public let log: ObservationLog
    public let faults: FaultInjector
    public let pages: PageAllocator
    private var heaps: [any HeapInventory] = []
    private let tally = AllocationTally()

    public init(log: ObservationLog, faults: FaultInjector) {
        self.log = log
        self.faults = faults
        self.pages = PageAllocator(log: log, faults: faults, tally: tally)
    }

    /// `BUG()`: recorded, then thrown so the caller stops where it stands.
    public func bug(_ message: String) throws(KernelPanic) -> Never {
        log.record(.panic(message: message))
        throw KernelPanic(message: message)
    }

    /// `BUG_ON(condition)`.
    public func bugOn(_ condition: Bool, _ message: @autoclosure () -> String) throws(KernelPanic) {
        if condition { try bug(message()) }
    }

    /// `pr_alert`.
    public func alert(_ message: String) { log.record(.alert(message: message)) }

    /// A typed slab cache living in this kernel (one per record type).
    public func makeHeap<Object: Poisonable>(of _: Object.Type, name: String) -> KernelHeap<Object> {
        let heap = KernelHeap<Object>(name: name, log: log, faults: faults, tally: tally, base: UInt64(0xffff_8880_0000_0000) + UInt64(heaps.count) << 32)
        heaps.append(heap)
        return heap
    }

    /// How many heap objects and pages are still allocated on behalf of a device.
    public func liveAllocationCount(of owner: AllocationOwner) -> Int { tally.count(of: owner) }

    /// Everything still allocated on behalf of a device, heap objects and pages.
    public func liveAllocations(of owner: AllocationOwner) -> [String] {
        heaps.flatMap { $0.liveDescriptions(of: owner) } + pages.liveDescriptions(of: owner)
    }
}

protocol HeapInventory: AnyObject {
    func liveDescriptions(of owner: AllocationOwner) -> [String]
}

/// How many heap objects and pages each owner holds, kept by the allocators
/// as they allocate and free, so that "does this device still hold anything?"
/// (asked after every event) costs a lookup, not a walk of every allocation.
final class AllocationTally {
    private var counts: [AllocationOwner: Int] = [:]

    func allocated(by owner: AllocationOwner) { counts[owner, default: 0] += 1 }

    func freed(by owner: AllocationOwner) {
        let left = counts[owner, default: 0] - 1
        counts[owner] = left > 0 ? left : nil
    }

    func count(of owner: AllocationOwner) -> Int { counts[owner] ?? 0 }
}

/// Freed heap slots remembered with their last contents, like KASAN's
/// quarantine: a read soon after free sees the stale object (as C would),
/// an older one sees poison. Either way the access is reported. The stale
/// contents themselves live in the heap's slot table; this only says which
/// slot leaves the quarantine next.
struct QuarantineOrder {
    private var order: Deque<UInt64> = []
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Admits a freed slot; returns the slot pushed out to make room, if any.
    mutating func admit(_ slot: UInt64) -> UInt64? {
        order.append(slot)
        return order.count > capacity ? order.popFirst() : nil
    }
}

/// `kzalloc`/`kfree` of one object type. Reads and writes go through here so
/// that a use after free or a double free is observed, never crashed on.
///
/// Addresses are `base + n * 64` with n counting up from 0 and never reused,
/// so slot n is where everything about address n is kept: the live object
/// and its owner, or the stale contents while the address is in quarantine.
public final class KernelHeap<Object: Poisonable>: HeapInventory {
    private enum Slot {
        case live(Object, owner: AllocationOwner)
        /// Freed recently: the contents as they were at free, or as a
        /// write-after-free left them.
        case quarantined(Object)
    }

    public let name: String
    private let log: ObservationLog
    private let faults: FaultInjector
    private let tally: AllocationTally
    /// Slot number to state; a slot neither live nor quarantined is absent.
    // Unchecked exclusivity: every access is one call into the table whose
    // closures never reach back into this object, so accesses cannot overlap;
    // the runtime check cost more than the lookup on this per-segment path.
    @exclusivity(unchecked) private var slots = NumberedTable<Slot>()
    private var quarantine = QuarantineOrder(capacity: 4096)
    private var nextSlot: UInt64 = 0
    private(set) public var liveCount = 0
    /// Counts every change to the heap's memory (allocate, write, free): a
    /// reader that finds the same count as before finds the very same
    /// contents at every address, so a result computed from them still holds.
    ///
    /// Read on every tree search (once per segment), where the runtime
    /// exclusivity check of a stored property cost more than the remembered
    /// search it guards. The getter is kept out of line: inlined into another
    /// module, the read took the check despite the attribute below.
    public var generation: UInt64 {
        @inline(never) get { storedGeneration }
    }
    // Unchecked exclusivity: a plain counter, only ever read or bumped by one
    // statement and never passed inout, so no two accesses can overlap.
    @exclusivity(unchecked) private var storedGeneration: UInt64 = 0
    private let base: UInt64
    /// Slab objects are 64-byte aligned here; the spacing makes addresses readable.
    private static var stride: UInt64 { 64 }

    init(name: String, log: ObservationLog, faults: FaultInjector, tally: AllocationTally, base: UInt64) {
        self.name = name
        self.log = log
        self.faults = faults
        self.tally = tally
        self.base = base
    }

    /// `kzalloc`: nil on (injected) ENOMEM.
    public func allocate(_ object: Object, owner: AllocationOwner) -> KernelAddress? {
        if faults.nextAllocationFails() {
            log.record(.allocationFailed(what: "kzalloc(\(name))"))
            return nil
        }
        let slot = nextSlot
        nextSlot += 1
        storedGeneration &+= 1
        slots[slot] = .live(object, owner: owner)
        liveCount += 1
        tally.allocated(by: owner)
        return KernelAddress(base + slot * Self.stride)
    }

    /// Reads an object; a freed one is reported and read back stale or poisoned.
    public func read(_ address: KernelAddress) -> Object {
        let slot = slotNumber(of: address).flatMap { slots[$0] }
        if case .live(let object, _)? = slot { return object }
        reportInvalid(address, .read)
        if case .quarantined(let stale)? = slot { return stale }
        return .poisoned
    }

    /// Writes an object; a write to freed memory is reported and lands in the stale copy.
    public func write(_ address: KernelAddress, _ object: Object) {
        guard let number = slotNumber(of: address) else {
            reportInvalid(address, .write)
            return
        }
        storedGeneration &+= 1
        let wasLive = slots.modify(number) { slot -> Bool in
            switch slot {
            case .live(_, let owner):
                slot = .live(object, owner: owner)
                return true
            case .quarantined:
                slot = .quarantined(object)
                return false
            }
        }
        if wasLive != true { reportInvalid(address, .write) }
    }

    public func modify(_ address: KernelAddress, _ change: (inout Object) -> Void) {
        var object = read(address)
        change(&object)
        write(address, object)
    }

    /// `kfree`.
    public func free(_ address: KernelAddress) {
        guard let number = slotNumber(of: address), case .live(let object, let owner)? = slots[number] else {
            if owns(address) {
                log.record(.doubleFree(address: address.description, what: name))
            } else {
                reportInvalid(address, .free)
            }
            return
        }
        storedGeneration &+= 1
        slots[number] = .quarantined(object)
        liveCount -= 1
        tally.freed(by: owner)
        if let forgotten = quarantine.admit(number) { slots[forgotten] = nil }
    }

    public func isLive(_ address: KernelAddress) -> Bool { peek(address) != nil }

    /// A read that observes nothing: for inspection by tests and the harness,
    /// never for the backend's own code paths.
    public func peek(_ address: KernelAddress) -> Object? {
        guard let number = slotNumber(of: address), case .live(let object, _)? = slots[number] else { return nil }
        return object
    }

    func liveDescriptions(of owner: AllocationOwner) -> [String] {
        var descriptions: [String] = []
        slots.forEachInOrder { number, slot in
            if case .live(_, owner) = slot {
                descriptions.append("\(name) at \(KernelAddress(base + number * Self.stride))")
            }
        }
        return descriptions
    }

    /// The slot an address would be the start of; nil for addresses outside
    /// the heap or misaligned. Slots not yet handed out are simply absent.
    private func slotNumber(of address: KernelAddress) -> UInt64? {
        guard address.value >= base else { return nil }
        let offset = address.value - base
        guard offset % Self.stride == 0 else { return nil }
        return offset / Self.stride
    }

    /// Whether the address lies in the range this heap has handed out so far.
    private func owns(_ address: KernelAddress) -> Bool {
        address.value >= base && address.value < base + nextSlot * Self.stride
    }

    private func reportInvalid(_ address: KernelAddress, _ access: MemoryAccess) {
        log.record(.useAfterFree(address: address.description, access: access,
                                 what: owns(address) ? "freed \(name)" : "wild pointer into \(name)"))
    }
}

/// `alloc_page`/`__free_page`. Pages back persistent grant mappings; the
/// block device checks their liveness before every transfer.
///
/// Frames are numbered up from 0x100000 and never reused, so a frame's number
/// indexes its state directly.
public final class PageAllocator {

    private let log: ObservationLog
    private let faults: FaultInjector
    private let tally: AllocationTally
    /// Frame number to the owner of an allocated frame; a freed (or never
    /// handed out, or reserved) frame is absent.
    // Unchecked exclusivity: every access is one call into the table whose
    // closures never reach back into this object, so accesses cannot overlap;
    // the runtime check cost more than the lookup on this per-segment path.
    @exclusivity(unchecked) private var frames = NumberedTable<AllocationOwner>()
    /// Reserved frames, as the runs `reserveRun` handed out (one per vbd's
    /// ring, a handful in all): a connect sets aside hundreds of frames, and
    /// entering each in `frames` cost more than the rest of the connect.
    private var reservedRuns: [ReservedPages] = []
    private(set) public var liveCount = 0
    private var nextFrame: UInt64 = 0x10_0000
    /// How many frames were freed so far. Frames are never handed out
    /// again, so a frame seen live is live for as long as this count stays
    /// the same: the grant table's host-page entries keep the count at which
    /// they saw their frame live, and skip asking `isLive` while it holds.
    var freeCount: UInt64 { storedFreeCount }
    // Unchecked exclusivity: a plain counter, only ever read or bumped by one
    // statement and never passed inout, so no two accesses can overlap.
    @exclusivity(unchecked) private var storedFreeCount: UInt64 = 0

    init(log: ObservationLog, faults: FaultInjector, tally: AllocationTally) {
        self.log = log
        self.faults = faults
        self.tally = tally
    }

    /// `alloc_page(GFP_KERNEL)`: nil on (injected) ENOMEM.
    public func allocate(owner: AllocationOwner) -> PageFrame? {
        if faults.nextAllocationFails() {
            log.record(.allocationFailed(what: "alloc_page"))
            return nil
        }
        let frame = takeFrame()
        frames[frame.number] = owner
        liveCount += 1
        tally.allocated(by: owner)
        return frame
    }

    /// Pages set aside when the module loads (blkback's pending pages): never
    /// freed, never failing, not charged to a device.
    public func reserve(count: Int) -> [PageFrame] { Array(reserveRun(count: count)) }

    /// The same as `reserve(count:)`, as one run of consecutive frames: the
    /// frames are numbered in a row, so the run is two numbers, not an array.
    public func reserveRun(count: Int) -> ReservedPages {
        let run = ReservedPages(firstFrame: nextFrame, count: count)
        nextFrame += UInt64(count)
        if count > 0 { reservedRuns.append(run) }
        return run
    }

    public func free(_ frame: PageFrame) {
        if let owner = frames[frame.number] {
            storedFreeCount &+= 1
            frames[frame.number] = nil
            liveCount -= 1
            tally.freed(by: owner)
        } else if isReserved(frame) {
            log.record(.useAfterFree(address: frame.description, access: .free, what: "a reserved page"))
        } else {
            if frame.number < nextFrame {
                log.record(.doubleFree(address: frame.description, what: "page"))
            } else {
                log.record(.useAfterFree(address: frame.description, access: .free, what: "a page never allocated"))
            }
        }
    }

    public func isLive(_ frame: PageFrame) -> Bool { frames.contains(frame.number) || isReserved(frame) }

    private func isReserved(_ frame: PageFrame) -> Bool {
        for run in reservedRuns where run.includes(frame) { return true }
        return false
    }

    func liveDescriptions(of owner: AllocationOwner) -> [String] {
        var descriptions: [String] = []
        frames.forEachInOrder { number, frameOwner in
            if frameOwner == owner { descriptions.append("page \(PageFrame(number))") }
        }
        return descriptions
    }

    private func takeFrame() -> PageFrame {
        defer { nextFrame += 1 }
        return PageFrame(nextFrame)
    }
}

/// Consecutive frames set aside by `PageAllocator.reserveRun`: never freed,
/// never charged to a device.
public struct ReservedPages: RandomAccessCollection, Hashable, Sendable {
    public let firstFrame: UInt64
    public let count: Int

    public init(firstFrame: UInt64, count: Int) {
        self.firstFrame = firstFrame
        self.count = count
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(index: Int) -> PageFrame {
        precondition(index >= 0 && index < count, "reserved page index out of range")
        return PageFrame(firstFrame + UInt64(index))
    }

    /// The frames from `range.lowerBound` on, as a run of their own.
    public subscript(run range: Range<Int>) -> ReservedPages {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "reserved run out of range")
        return ReservedPages(firstFrame: firstFrame + UInt64(range.lowerBound), count: range.count)
    }

    public func includes(_ frame: PageFrame) -> Bool { frame.number &- firstFrame < UInt64(count) }
}
