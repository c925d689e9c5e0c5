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
    private let kernel: FakeKernel
    private let memory: GuestMemory
    private var entries: [DomainID: [GrantRef: Entry]] = [:]
    private var mappings: [GrantHandle: GrantMapping] = [:]
    private var hostPages: [PageFrame: GrantHandle] = [:]
    /// Maptrack: the lowest free handle is handed out first, starting at 0.
    private var freedHandles = Heap<GrantHandle>()
    private var nextHandle: GrantHandle = 0
    /// Pages the block device is reading or writing right now.
    var pagesInFlight: [PageFrame: Int] = [:]

    init(log: ObservationLog, faults: FaultInjector, kernel: FakeKernel, memory: GuestMemory) {
        self.log = log
        self.faults = faults
        self.kernel = kernel
        self.memory = memory
    }

    // MARK: the guest's side

    /// The guest grants a fresh page of its own under `gref`. Granting again a
    /// gref that is still granted only changes its read-only flag: the page
    /// behind it stays, as live mappings still alias it.
    public func grant(domid: DomainID, gref: GrantRef, readOnly: Bool) {
        if var entry = entries[domid]?[gref], !entry.revoked {
            entry.readOnly = readOnly
            entries[domid]![gref] = entry
            return
        }
        entries[domid, default: [:]][gref] = Entry(page: memory.newPage(), readOnly: readOnly, revoked: false, mapCount: 0)
    }

    /// `gnttab_end_foreign_access`: refused while the backend maps the grant.
    @discardableResult
    public func revoke(domid: DomainID, gref: GrantRef) -> Bool {
        guard var entry = entries[domid]?[gref], !entry.revoked else {
            log.record(.revoke(domid: domid, gref: gref, refused: false))
            return true
        }
        if entry.mapCount > 0 {
            log.record(.revoke(domid: domid, gref: gref, refused: true))
            return false
        }
        entry.revoked = true
        memory.release(entry.page)
        entries[domid]![gref] = entry
        log.record(.revoke(domid: domid, gref: gref, refused: false))
        return true
    }

    /// The guest page a gref names now, for the guest (the harness) to fill or read.
    public func guestPage(domid: DomainID, gref: GrantRef) -> GuestPage? {
        guard let entry = entries[domid]?[gref], !entry.revoked else { return nil }
        return entry.page
    }

    /// A domain is destroyed: its grant table goes with it.
    public func forgetDomain(_ domid: DomainID) {
        for (_, entry) in entries[domid] ?? [:] where !entry.revoked { memory.release(entry.page) }
        entries[domid] = nil
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
        guard let entry = entries[op.domid]?[op.gref] else { return failed(.badGntref) }
        if entry.revoked { return failed(.generalError) }
        let readOnly = op.flags.contains(.readOnly)
        if entry.readOnly && !readOnly { return failed(.generalError) }
        if !op.flags.contains(.hostMap) { return failed(.generalError) }
        if !kernel.pages.isLive(op.hostPage) {
            log.record(.useAfterFree(address: op.hostPage.description, access: .write, what: "grant mapped into a freed page"))
            return failed(.badVirtAddr)
        }
        // A host address already backed by a mapping cannot take another.
        if hostPages[op.hostPage] != nil { return failed(.generalError) }
        let handle = takeHandle()
        let mapping = GrantMapping(handle: handle, domid: op.domid, gref: op.gref, guestPage: entry.page,
                                   readOnly: readOnly, hostPage: op.hostPage)
        mappings[handle] = mapping
        hostPages[op.hostPage] = handle
        entries[op.domid]![op.gref]!.mapCount += 1
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
        guard let mapping = mappings[op.handle] else { return UnmapResult(status: .badHandle, unmapped: nil) }
        guard mapping.hostPage == op.hostPage else { return UnmapResult(status: .generalError, unmapped: nil) }
        if pagesInFlight[mapping.hostPage, default: 0] > 0 {
            log.record(.unmapInUse(handle: op.handle, page: mapping.hostPage))
        }
        mappings[op.handle] = nil
        hostPages[mapping.hostPage] = nil
        freedHandles.insert(op.handle)
        if entries[mapping.domid]?[mapping.gref] != nil {
            entries[mapping.domid]![mapping.gref]!.mapCount -= 1
        }
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

    public func mapping(handle: GrantHandle) -> GrantMapping? { mappings[handle] }
    public func mapping(hostPage: PageFrame) -> GrantMapping? { hostPages[hostPage].flatMap { mappings[$0] } }
    /// Live mappings of one guest's grants, by handle.
    /// How many of the backend's mappings of `domid`'s grants are live.
    public func liveMappingCount(of domid: DomainID) -> Int {
        mappings.values.reduce(0) { $0 + ($1.domid == domid ? 1 : 0) }
    }

    public func liveMappings(of domid: DomainID) -> [GrantMapping] {
        mappings.values.filter { $0.domid == domid }.sorted { $0.handle < $1.handle }
    }
    public var liveMappingCount: Int { mappings.count }
}

/// Guest memory as the harness sees it: 8 sector tokens per page.
public final class GuestMemory {
    private var pages: [GuestPage: SIMD8<UInt64>] = [:]
    private var next: UInt64 = 1

    public init() {}

    func newPage() -> GuestPage {
        let page = GuestPage(next)
        next += 1
        pages[page] = SIMD8<UInt64>()
        return page
    }

    func release(_ page: GuestPage) { pages[page] = nil }

    public func token(_ page: GuestPage, sector: Int) -> UInt64 { pages[page]?[sector] ?? 0 }

    public func setToken(_ page: GuestPage, sector: Int, _ token: UInt64) {
        pages[page]?[sector] = token
    }

    /// A whole page at once, for the block device's transfers.
    func tokens(of page: GuestPage) -> SIMD8<UInt64> { pages[page] ?? SIMD8<UInt64>() }
    func setTokens(of page: GuestPage, _ tokens: SIMD8<UInt64>) {
        if pages[page] != nil { pages[page] = tokens }
    }
}
