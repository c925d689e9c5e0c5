import Blkif
import HeapModule

/// One live grant mapping made by the backend's domain.
public struct GrantMapping: Hashable, Sendable {
    public let handle: GrantHandle
    public let domid: DomainID
    public let gref: GrantRef
    public let guestPage: GuestPage
    public let readOnly: Bool
    public let hostPage: PageFrame
}

/// A guest's grant table and the hypervisor's map/unmap of it, for the one
/// mapping domain there is (dom0, the backend).
public final class GrantTable {
    struct Entry {
        var page: GuestPage
        var readOnly: Bool
        var revoked: Bool
        var mapCount: Int
    }

    /// The domain the backend runs in; grants name it as the one allowed to map.
    public static let backendDomain: DomainID = 0

    private let log: ObservationLog
    private let faults: FaultInjector
    /// The kernel's page allocator (`kernel.pages`), held directly: a
    /// completing segment asks it for the free count, and reaching it
    /// through the kernel retained and released it every time.
    private let pages: PageAllocator
    private let memory: GuestMemory
    /// Entries by `entryKey(domid:gref:)`: grefs are small numbers in
    /// practice (they index the guest's table), so one domain's entries sit
    /// together; a stray large gref, or a second domain's, lands among the
    /// table's outliers and costs only a hash.
    // Unchecked exclusivity: every access is one call into the table whose
    // closures never reach back into this object, so accesses cannot overlap;
    // the runtime check cost more than the lookup on this per-segment path.
    @exclusivity(unchecked) private var entries = NumberedTable<Entry>()
    /// Live mappings indexed by handle. Maptrack hands out the lowest free
    /// handle first, so the array is as long as the most mappings ever live
    /// at once, and walking it gives the mappings in handle order.
    // Unchecked exclusivity: read or replaced whole, never held across a call.
    @exclusivity(unchecked) private var mappings: [GrantMapping?] = []
    /// Live mappings per mapped domain, kept as mappings come and go.
    // Unchecked exclusivity: every access is one call into the table whose
    // closures only change the count they are handed, never reaching back
    // into this object, so accesses cannot overlap; the oracle reads it after
    // every event, where the runtime check cost more than the lookup.
    @exclusivity(unchecked) private var mappingCounts = NumberedTable<Int>()
    // Unchecked exclusivity: a plain counter, only ever read or changed by one
    // statement and never passed inout, so no two accesses can overlap.
    @exclusivity(unchecked) private var totalMappings = 0
    /// Host frame number to what uses the page: the mapping it backs and the
    /// bio segments in flight on it. One table for both, so that a segment's
    /// completion finds its page's mapping, whether the frame is still live,
    /// and ends its use in one lookup. A page is present while it backs a
    /// mapping or has a segment in flight.
    // Unchecked exclusivity: every access is one call into the table whose
    // closures never reach back into this object, so accesses cannot overlap;
    // the runtime check cost more than the lookup on this per-segment path.
    @exclusivity(unchecked) private var hostPages = NumberedTable<HostPageUse>()
    /// Maptrack: the lowest free handle is handed out first, starting at 0.
    private var freedHandles = Heap<GrantHandle>()
    private var nextHandle: GrantHandle = 0

    init(log: ObservationLog, faults: FaultInjector, kernel: FakeKernel, memory: GuestMemory) {
        self.log = log
        self.faults = faults
        self.pages = kernel.pages
        self.memory = memory
    }

    // MARK: the guest's side

    /// The guest grants a fresh page of its own under `gref`. Granting again a
    /// gref that is still granted only changes its read-only flag: the page
    /// behind it stays, as live mappings still alias it.
    public func grant(domid: DomainID, gref: GrantRef, readOnly: Bool) {
        let key = Self.entryKey(domid: domid, gref: gref)
        let regranted = entries.modify(key) { entry -> Bool in
            guard !entry.revoked else { return false }
            entry.readOnly = readOnly
            return true
        }
        if regranted == true { return }
        entries[key] = Entry(page: memory.newPage(), readOnly: readOnly, revoked: false, mapCount: 0)
    }

    /// `gnttab_end_foreign_access`: refused while the backend maps the grant.
    @discardableResult
    public func revoke(domid: DomainID, gref: GrantRef) -> Bool {
        guard let entry = entry(domid: domid, gref: gref), !entry.revoked else {
            log.record(.revoke(domid: domid, gref: gref, refused: false))
            return true
        }
        if entry.mapCount > 0 {
            log.record(.revoke(domid: domid, gref: gref, refused: true))
            return false
        }
        memory.release(entry.page)
        modifyEntry(domid: domid, gref: gref) { $0.revoked = true }
        log.record(.revoke(domid: domid, gref: gref, refused: false))
        return true
    }

    /// The guest page a gref names now, for the guest (the harness) to fill or read.
    public func guestPage(domid: DomainID, gref: GrantRef) -> GuestPage? {
        guard let entry = entry(domid: domid, gref: gref), !entry.revoked else { return nil }
        return entry.page
    }

    /// A domain is destroyed: its grant table goes with it.
    public func forgetDomain(_ domid: DomainID) {
        let domain = Self.entryKey(domid: domid, gref: 0)...Self.entryKey(domid: domid, gref: .max)
        var keys: [UInt64] = []
        entries.forEachInOrder { key, _ in
            if domain.contains(key) { keys.append(key) }
        }
        for key in keys {
            if let entry = entries.removeValue(at: key), !entry.revoked { memory.release(entry.page) }
        }
    }

    /// Where a domain's gref lives in `entries`: the domain above the gref,
    /// so that one domain's grefs (small numbers, a guest's table index)
    /// are dense in the table and a lookup is one index computation, not
    /// one per level of a table of tables (whose inner table the lookup
    /// copied, with a retain and release of each of its buffers).
    private static func entryKey(domid: DomainID, gref: GrantRef) -> UInt64 { UInt64(domid) << 32 | UInt64(gref) }

    private func entry(domid: DomainID, gref: GrantRef) -> Entry? {
        entries[Self.entryKey(domid: domid, gref: gref)]
    }

    private func modifyEntry(domid: DomainID, gref: GrantRef, _ change: (inout Entry) -> Void) {
        entries.modify(Self.entryKey(domid: domid, gref: gref), change)
    }

    // MARK: the backend's side

    /// `gnttab_map_refs`: one hypercall, a status per operation. Returns nil
    /// when the hypercall fails as a whole (then nothing was mapped).
    public func map(_ ops: [MapOp]) -> [MapResult]? {
        if faults.nextHypercallFails() {
            log.record(.mapBatch(MapBatch(ops: ops, results: nil)))
            return nil
        }
        let results = ops.map(mapOne)
        log.record(.mapBatch(MapBatch(ops: ops, results: results)))
        return results
    }

    private func mapOne(_ op: MapOp) -> MapResult {
        let failed = { (status: GrantStatus) in MapResult(status: status, handle: GrantHandle.max) }
        if let injected = faults.nextMapOperation(gref: op.gref) { return failed(injected) }
        guard let entry = entry(domid: op.domid, gref: op.gref) else { return failed(.badGntref) }
        if entry.revoked { return failed(.generalError) }
        let readOnly = op.flags.contains(.readOnly)
        if entry.readOnly && !readOnly { return failed(.generalError) }
        if !op.flags.contains(.hostMap) { return failed(.generalError) }
        if !pages.isLive(op.hostPage) {
            log.record(.useAfterFree(address: op.hostPage.description, access: .write, what: "grant mapped into a freed page"))
            return failed(.badVirtAddr)
        }
        // A host address already backed by a mapping cannot take another.
        if hostPages[op.hostPage.number]?.mapping != nil { return failed(.generalError) }
        let handle = takeHandle()
        let mapping = GrantMapping(handle: handle, domid: op.domid, gref: op.gref, guestPage: entry.page,
                                   readOnly: readOnly, hostPage: op.hostPage)
        if Int(handle) == mappings.count { mappings.append(mapping) } else { mappings[Int(handle)] = mapping }
        mappingCounts.modify(UInt64(op.domid), default: 0) { $0 += 1 }
        totalMappings += 1
        // The frame was found live just above, and no page has been freed since.
        let liveStamp = pages.freeCount
        hostPages.modify(op.hostPage.number, default: HostPageUse()) { use in
            use.mapping = mapping
            use.liveAtFreeCount = liveStamp
        }
        modifyEntry(domid: op.domid, gref: op.gref) { $0.mapCount += 1 }
        return MapResult(status: .okay, handle: handle)
    }

    /// `gnttab_unmap_refs`: unknown or stale handles answer bad_handle.
    @discardableResult
    public func unmap(_ ops: [UnmapOp]) -> [UnmapResult] {
        let results = ops.map(unmapOne)
        log.record(.unmapBatch(UnmapBatch(ops: ops, results: results)))
        return results
    }

    private func unmapOne(_ op: UnmapOp) -> UnmapResult {
        guard let mapping = mapping(handle: op.handle) else { return UnmapResult(status: .badHandle, unmapped: nil) }
        guard mapping.hostPage == op.hostPage else { return UnmapResult(status: .generalError, unmapped: nil) }
        if hostPages[mapping.hostPage.number]?.isInFlight == true {
            log.record(.unmapInUse(handle: op.handle, page: mapping.hostPage))
        }
        mappings[Int(op.handle)] = nil
        if mappingCounts.modify(UInt64(mapping.domid), { count -> Int in count -= 1; return count }) == 0 {
            mappingCounts[UInt64(mapping.domid)] = nil
        }
        totalMappings -= 1
        let stillInFlight = hostPages.modify(mapping.hostPage.number) { use -> Bool in
            use.mapping = nil
            return use.isInFlight
        }
        if stillInFlight == false { hostPages[mapping.hostPage.number] = nil }
        freedHandles.insert(op.handle)
        modifyEntry(domid: mapping.domid, gref: mapping.gref) { $0.mapCount -= 1 }
        return UnmapResult(status: .okay, unmapped: mapping)
    }

    private func takeHandle() -> GrantHandle {
        if let lowest = freedHandles.min, lowest < nextHandle {
            return freedHandles.removeMin()
        }
        defer { nextHandle += 1 }
        return nextHandle
    }

    // MARK: inspection (no side effects)

    public func mapping(handle: GrantHandle) -> GrantMapping? {
        Int(handle) < mappings.count ? mappings[Int(handle)] : nil
    }
    public func mapping(hostPage: PageFrame) -> GrantMapping? {
        hostPages[hostPage.number]?.mapping
    }

    // MARK: the backend reading guest bytes

    /// The backend reads `count` bytes at `offset` of the guest page mapped
    /// at `hostPage` (a `kmap` of a mapped grant and a load from it). A page
    /// with no live mapping is reported and reads as zeros. Every read is
    /// observed, and any armed guest write it completes lands right after it.
    public func readGuestBytes(hostPage: PageFrame, offset: Int, count: Int) -> [UInt8] {
        guard let mapping = mapping(hostPage: hostPage) else {
            log.record(.accessUnmapped(page: hostPage, detail: "read of \(count) bytes at offset \(offset) with no live grant mapping"))
            return [UInt8](repeating: 0, count: count)
        }
        let (bytes, landed) = memory.backendRead(mapping.guestPage, offset: offset, count: count)
        log.record(.guestRead(GuestByteRead(domid: mapping.domid, gref: mapping.gref, page: mapping.guestPage,
                                            offset: offset, count: count)))
        for write in landed { log.record(.armedWriteLanded(write)) }
        return bytes
    }

    // MARK: block I/O on host pages

    /// A submitted bio segment starts using `page`: unmapping the page is
    /// reported as an unmap in use until the segment completes.
    // Inlined into the block device's per-segment loops (the only callers):
    // a call cost about as much as the change, and returning the mapping
    // through memory more.
    @inline(__always)
    func beginIO(on page: PageFrame) {
        hostPages.modify(page.number, default: HostPageUse()) { $0.segmentsInFlight += 1 }
    }

    /// A bio segment on `page` completes. Returns the mapping the page backs
    /// (what the segment's data moves through) and whether the frame is
    /// still allocated (`PageAllocator.isLive`), both as they are now and
    /// found in the same lookup: the page allocator is asked about the frame
    /// only when a page was freed since the frame was last seen live.
    @inline(__always)
    func endIO(on page: PageFrame) -> (mapping: GrantMapping?, pageIsLive: Bool) {
        let freeCount = pages.freeCount
        let found = hostPages.modify(page.number) { use -> (mapping: GrantMapping?, knownLive: Bool, unused: Bool) in
            use.segmentsInFlight -= 1
            return (use.mapping, use.liveAtFreeCount == freeCount, use.mapping == nil && !use.isInFlight)
        }
        guard let found else { return (nil, pages.isLive(page)) }
        if found.unused { hostPages[page.number] = nil }
        return (found.mapping, found.knownLive || pages.isLive(page))
    }

    /// How many of the backend's mappings of `domid`'s grants are live.
    public func liveMappingCount(of domid: DomainID) -> Int { mappingCounts[UInt64(domid)] ?? 0 }

    /// Live mappings of one guest's grants, by handle.
    public func liveMappings(of domid: DomainID) -> [GrantMapping] {
        let wanted = liveMappingCount(of: domid)
        guard wanted > 0 else { return [] }
        var found: [GrantMapping] = []
        found.reserveCapacity(wanted)
        for case let mapping? in mappings where mapping.domid == domid {
            found.append(mapping)
            if found.count == wanted { break }
        }
        return found
    }
    public var liveMappingCount: Int { totalMappings }
}

/// What uses one host page: the mapping it backs, if any, and how many
/// submitted, uncompleted bio segments touch it (an unmap of a page still in
/// flight is a defect the grant table reports).
struct HostPageUse {
    /// The same value as `GrantTable.mappings[handle]` while the page backs
    /// it (a mapping never changes while it lives), kept here so that a
    /// completing segment finds it without a second lookup.
    var mapping: GrantMapping?
    var segmentsInFlight = 0
    /// `PageAllocator.freeCount` when the frame was last seen allocated, nil
    /// when unknown. A frame stops being live only by being freed, which
    /// bumps that count, and frames are never handed out again; so while
    /// the count is unchanged the frame is still live, and its liveness
    /// needs no lookup. Any free at all (of any frame) makes the stamp stale,
    /// and the page allocator is asked again.
    var liveAtFreeCount: UInt64?

    var isInFlight: Bool { segmentsInFlight > 0 }
}
