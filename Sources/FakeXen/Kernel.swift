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

    public init(log: ObservationLog, faults: FaultInjector) {
        self.log = log
        self.faults = faults
        self.pages = PageAllocator(log: log, faults: faults)
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
        let heap = KernelHeap<Object>(name: name, log: log, faults: faults, base: UInt64(0xffff_8880_0000_0000) + UInt64(heaps.count) << 32)
        heaps.append(heap)
        return heap
    }

    /// How many heap objects and pages are still allocated on behalf of a device.
    public func liveAllocationCount(of owner: AllocationOwner) -> Int {
        heaps.reduce(0) { $0 + $1.liveCount(of: owner) } + pages.liveCount(of: owner)
    }

    /// Everything still allocated on behalf of a device, heap objects and pages.
    public func liveAllocations(of owner: AllocationOwner) -> [String] {
        heaps.flatMap { $0.liveDescriptions(of: owner) } + pages.liveDescriptions(of: owner)
    }
}

protocol HeapInventory: AnyObject {
    func liveCount(of owner: AllocationOwner) -> Int
    func liveDescriptions(of owner: AllocationOwner) -> [String]
}

/// Freed addresses remembered with their last contents, like KASAN's
/// quarantine: a read soon after free sees the stale object (as C would),
/// an older one sees poison. Either way the access is reported.
struct Quarantine<Object> {
    private var order: Deque<KernelAddress> = []
    private var contents: [KernelAddress: Object] = [:]
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    mutating func hold(_ address: KernelAddress, _ object: Object) {
        contents[address] = object
        order.append(address)
        if order.count > capacity, let oldest = order.popFirst() { contents[oldest] = nil }
    }

    func stale(_ address: KernelAddress) -> Object? { contents[address] }
    mutating func overwrite(_ address: KernelAddress, _ object: Object) {
        if contents[address] != nil { contents[address] = object }
    }
}

/// `kzalloc`/`kfree` of one object type. Reads and writes go through here so
/// that a use after free or a double free is observed, never crashed on.
public final class KernelHeap<Object: Poisonable>: HeapInventory {
    private struct Slot { var object: Object; let owner: AllocationOwner }

    public let name: String
    private let log: ObservationLog
    private let faults: FaultInjector
    private var live: [KernelAddress: Slot] = [:]
    private var quarantine = Quarantine<Object>(capacity: 4096)
    private var nextAddress: UInt64
    private let base: UInt64
    /// Slab objects are 64-byte aligned here; the spacing makes addresses readable.
    private static var stride: UInt64 { 64 }

    init(name: String, log: ObservationLog, faults: FaultInjector, base: UInt64) {
        self.name = name
        self.log = log
        self.faults = faults
        self.base = base
        self.nextAddress = base
    }

    /// `kzalloc`: nil on (injected) ENOMEM.
    public func allocate(_ object: Object, owner: AllocationOwner) -> KernelAddress? {
        if faults.nextAllocationFails() {
            log.record(.allocationFailed(what: "kzalloc(\(name))"))
            return nil
        }
        let address = KernelAddress(nextAddress)
        nextAddress += Self.stride
        live[address] = Slot(object: object, owner: owner)
        return address
    }

    /// Reads an object; a freed one is reported and read back stale or poisoned.
    public func read(_ address: KernelAddress) -> Object {
        if let slot = live[address] { return slot.object }
        reportInvalid(address, .read)
        return quarantine.stale(address) ?? .poisoned
    }

    /// Writes an object; a write to freed memory is reported and lands in the stale copy.
    public func write(_ address: KernelAddress, _ object: Object) {
        if live[address] != nil {
            live[address]!.object = object
            return
        }
        reportInvalid(address, .write)
        quarantine.overwrite(address, object)
    }

    public func modify(_ address: KernelAddress, _ change: (inout Object) -> Void) {
        var object = read(address)
        change(&object)
        write(address, object)
    }

    /// `kfree`.
    public func free(_ address: KernelAddress) {
        guard let slot = live.removeValue(forKey: address) else {
            if owns(address) {
                log.record(.doubleFree(address: address.description, what: name))
            } else {
                reportInvalid(address, .free)
            }
            return
        }
        quarantine.hold(address, slot.object)
    }

    public func isLive(_ address: KernelAddress) -> Bool { live[address] != nil }

    /// A read that observes nothing: for inspection by tests and the harness,
    /// never for the backend's own code paths.
    public func peek(_ address: KernelAddress) -> Object? { live[address]?.object }

    public var liveCount: Int { live.count }

    func liveCount(of owner: AllocationOwner) -> Int {
        live.values.reduce(0) { $0 + ($1.owner == owner ? 1 : 0) }
    }

    func liveDescriptions(of owner: AllocationOwner) -> [String] {
        live.filter { $0.value.owner == owner }.keys.sorted().map { "\(name) at \($0)" }
    }

    private func owns(_ address: KernelAddress) -> Bool {
        address.value >= base && address.value < nextAddress
    }

    private func reportInvalid(_ address: KernelAddress, _ access: MemoryAccess) {
        log.record(.useAfterFree(address: address.description, access: access,
                                 what: owns(address) ? "freed \(name)" : "wild pointer into \(name)"))
    }
}

/// `alloc_page`/`__free_page`. Pages back persistent grant mappings; the
/// block device checks their liveness before every transfer.
public final class PageAllocator {
    private let log: ObservationLog
    private let faults: FaultInjector
    private var owners: [PageFrame: AllocationOwner] = [:]
    private var reserved: Set<PageFrame> = []
    private var nextFrame: UInt64 = 0x10_0000

    init(log: ObservationLog, faults: FaultInjector) {
        self.log = log
        self.faults = faults
    }

    /// `alloc_page(GFP_KERNEL)`: nil on (injected) ENOMEM.
    public func allocate(owner: AllocationOwner) -> PageFrame? {
        if faults.nextAllocationFails() {
            log.record(.allocationFailed(what: "alloc_page"))
            return nil
        }
        let frame = takeFrame()
        owners[frame] = owner
        return frame
    }

    /// Pages set aside when the module loads (blkback's pending pages): never
    /// freed, never failing, not charged to a device.
    public func reserve(count: Int) -> [PageFrame] {
        (0..<count).map { _ in
            let frame = takeFrame()
            reserved.insert(frame)
            return frame
        }
    }

    public func free(_ frame: PageFrame) {
        guard owners.removeValue(forKey: frame) != nil else {
            if reserved.contains(frame) {
                log.record(.useAfterFree(address: frame.description, access: .free, what: "a reserved page"))
            } else if frame.number < nextFrame {
                log.record(.doubleFree(address: frame.description, what: "page"))
            } else {
                log.record(.useAfterFree(address: frame.description, access: .free, what: "a page never allocated"))
            }
            return
        }
    }

    public func isLive(_ frame: PageFrame) -> Bool { owners[frame] != nil || reserved.contains(frame) }

    public var liveCount: Int { owners.count }

    func liveCount(of owner: AllocationOwner) -> Int {
        owners.values.reduce(0) { $0 + ($1 == owner ? 1 : 0) }
    }

    func liveDescriptions(of owner: AllocationOwner) -> [String] {
        owners.filter { $0.value == owner }.keys.sorted().map { "page \($0)" }
    }

    private func takeFrame() -> PageFrame {
        defer { nextFrame += 1 }
        return PageFrame(nextFrame)
    }
}
