import Blkif
import FakeXen

/// `xen_blkbk_map` for one request: decide per segment between a persistent
/// hit, a new persistent grant and a one-off mapping; map all new ones in one
/// batch; then match results back to segments.
struct SegmentMapper {
    enum Outcome {
        /// Every segment has a page to do its I/O through: `scratch.pages`.
        case mapped
        /// A map failed or memory ran out: the request fails.
        case failed
    }

    /// The per-segment bookkeeping of one request. It lives in the connection
    /// (`ConnectionState.mappingScratch`) and the mapper works on it there, in
    /// place, so that its arrays are allocated once per connection and never
    /// copied out and back (a retain and release of each array per request).
    ///
    /// The per-segment arrays have room for the largest request (11 segments)
    /// and are written by segment index: a request uses its first
    /// `segments.count` entries, and entries past those (a longer earlier
    /// request's) are never read, so nothing needs clearing between requests.
    struct Scratch {
        /// Per segment: the persistent record it uses, if any.
        var records: [KernelAddress?]
        /// Per segment: the index of its op in the batch, if it queued one.
        var opIndex: [Int?]
        /// Per segment: the page its I/O goes through.
        var pages: [PageFrame]
        /// Per segment: it shared a new record whose map failed (fixed logic only).
        var orphaned: [Bool]
        /// Per segment: the handle of a persistent hit's record, seen live
        /// by the first pass, with the heap's generation then.
        var known: [KnownHandle?]
        /// Records this request put in the tree, for rolling back on ENOMEM.
        var inserted: [KernelAddress]

        /// Room for the largest request.
        static func sized() -> Scratch {
            let room = Blkif.maxSegmentsPerRequest
            return Scratch(records: Array(repeating: nil, count: room), opIndex: Array(repeating: nil, count: room),
                           pages: Array(repeating: PageFrame(0), count: room),
                           orphaned: Array(repeating: false, count: room),
                           known: Array(repeating: nil, count: room), inserted: [])
        }
    }

    let backend: Blkback
    let connection: Connection
    let slot: Int
    let segments: [BlkifSegment]
    let isRead: Bool

    private var heap: KernelHeap<PersistentGrant> { backend.heap }
    private var kernel: FakeKernel { backend.xen.kernel }
    private var variant: BackendVariant { backend.variant }

    /// The batch for the hypercall; the grant table's log keeps it, so it is
    /// the request's own array, not scratch.
    private var ops: [MapOp] = []

    init(backend: Blkback, connection: Connection, slot: Int, segments: [BlkifSegment], isRead: Bool) {
        self.backend = backend
        self.connection = connection
        self.slot = slot
        self.segments = segments
        self.isRead = isRead
    }

    /// `state` is the connection's, reached in place for the whole mapping;
    /// the pages segments do their I/O through are left in
    /// `state.mappingScratch.pages` when it returns `.mapped`.
    mutating func map(_ state: inout ConnectionState) throws(KernelPanic) -> Outcome {
        if !state.mappingScratch.inserted.isEmpty { state.mappingScratch.inserted.removeAll(keepingCapacity: true) }
        let count = state.persistentGrants.count
        try kernel.bugOn(count > connection.maxPersistent,
                         "persistent_gnt_c \(count) > max \(connection.maxPersistent)")
        guard try decideSegments(&state) else { return try outOfMemory(&state) }
        let results = try issueBatch()
        return try matchResults(results, &state.slots[slot], &state.persistentGrants, &state.mappingScratch)
    }

    // MARK: first pass

    /// Returns false when an allocation failed.
    private mutating func decideSegments(_ state: inout ConnectionState) throws(KernelPanic) -> Bool {
        let persistent = state.persistentMode
        let reserved = state.slots[slot].reservedPages
        return try decideSegments(persistent: persistent, reserved: reserved, tree: &state.persistentGrants,
                                  overflowAlerted: &state.overflowAlerted, scratch: &state.mappingScratch)
    }

    private mutating func decideSegments(persistent: Bool, reserved: ReservedPages, tree: inout PersistentGrantTree,
                                         overflowAlerted: inout Bool, scratch: inout Scratch) throws(KernelPanic) -> Bool {
        let heap = heap
        // The heap's generation, read once rather than per segment: in this
        // loop only the allocation branch changes the heap (a search, a peek
        // or a read of a freed record does not), and it reads it again.
        var heapGeneration = heap.generation
        do {
            for (index, segment) in segments.enumerated() {
                var record: KernelAddress? = nil
                var live: LiveGrantFields? = nil
                if persistent { (record, live) = tree.searchRecord(segment.gref, heapGeneration: heapGeneration) }
                var hostPage: PageFrame
                var newMap: Bool
                scratch.known[index] = nil
                if let hit = record {
                    newMap = false
                    // A live record's read observes nothing, so a peek stands for it;
                    // a freed one is read, and the read reports it.
                    if live == nil { live = heap.peek(hit).map { LiveGrantFields(page: $0.page, handle: $0.handle) } }
                    if let live {
                        hostPage = live.page ?? reserved[index]
                        assert(heapGeneration == heap.generation, "a stale heap generation")
                        scratch.known[index] = KnownHandle(heapGeneration: heapGeneration, handle: live.handle)
                    } else {
                        hostPage = heap.read(hit).page ?? reserved[index]
                    }
                } else if persistent && tree.count < connection.maxPersistent {
                    guard let fresh = heap.allocate(.fresh(gref: segment.gref), owner: connection.owner) else { return false }
                    guard let page = kernel.pages.allocate(owner: connection.owner) else {
                        heap.free(fresh)
                        return false
                    }
                    heap.modify(fresh) { $0.page = page }
                    if case .duplicate = tree.insert(fresh) {
                        try kernel.bug("trying to add a gref that's already in the tree")
                    }
                    heapGeneration = heap.generation
                    scratch.inserted.append(fresh)
                    record = fresh
                    hostPage = page
                    newMap = true
                } else {
                    if persistent && !overflowAlerted {
                        overflowAlerted = true
                        kernel.alert("domain \(connection.parameters.domid), device \(connection.parameters.vbd) is using maximum number of persistent grants")
                    }
                    hostPage = reserved[index]
                    newMap = true
                }
                scratch.records[index] = record
                scratch.pages[index] = hostPage
                if newMap {
                    var flags: GrantMapFlags = .hostMap
                    // Persistent grants are mapped writable: later requests may read into them.
                    if record == nil && !isRead { flags.insert(.readOnly) }
                    scratch.opIndex[index] = ops.count
                    ops.append(MapOp(hostPage: hostPage, flags: flags, gref: segment.gref, domid: connection.parameters.domid))
                } else {
                    scratch.opIndex[index] = nil
                }
            }
            return true
        }
    }

    /// ENOMEM in the middle of the first pass.
    private mutating func outOfMemory(_ state: inout ConnectionState) throws(KernelPanic) -> Outcome {
        if variant.has(.enomemNoRollback) {
            // The seed returns at once: records stay in the tree unmapped, and
            // the bitmap is whatever the slot's previous request left.
            return .failed
        }
        for record in state.mappingScratch.inserted.reversed() {
            state.persistentGrants.erase(record)
            if let page = heap.read(record).page { kernel.pages.free(page) }
            heap.free(record)
        }
        state.slots[slot].unmapBitmap = 0
        return .failed
    }

    // MARK: the hypercall

    private func issueBatch() throws(KernelPanic) -> [MapResult] {
        guard !ops.isEmpty else { return [] }
        if let results = backend.xen.grants.map(ops) { return results }
        if variant.has(.bugOnHypercallError) {
            try kernel.bug("BUG_ON(ret) after gnttab_map_refs")
        }
        // Nothing was mapped: every op of the batch counts as failed.
        return Array(repeating: MapResult(status: .generalError, handle: invalidHandle), count: ops.count)
    }

    // MARK: second pass

    /// The handle of the record segment `index` uses, as a heap read gives
    /// it: when the first pass found that record live and the heap has not
    /// changed since, the read would observe nothing and give what was seen
    /// then, so that is taken; otherwise the heap is read (and reports).
    /// `heapGeneration` is the heap's generation now, as the caller holds it.
    private func handle(of record: KernelAddress, segment index: Int, _ scratch: Scratch,
                        heapGeneration: UInt64) -> GrantHandle {
        assert(heapGeneration == heap.generation, "a stale heap generation")
        if let known = scratch.known[index], known.heapGeneration == heapGeneration { return known.handle }
        return heap.read(record).handle
    }

    private func matchResults(_ results: [MapResult], _ pending: inout PendingRequest,
                              _ tree: inout PersistentGrantTree, _ scratch: inout Scratch) throws(KernelPanic) -> Outcome {
        for index in segments.indices { scratch.orphaned[index] = false }
        // The heap's generation, read once and again only after the loop
        // changes the heap (a failed map's rollback, a new record's handle).
        var heapGeneration = heap.generation
        // Read once: the variant is a value holding a set and a name, and
        // reaching it per segment copied (retained and released) both.
        let handleZeroUnmapped = variant.has(.handleZeroUnmapped)
        do {
            pending.unmapBitmap = 0
            var failed = false
            var next = 0
            for index in segments.indices {
                if scratch.orphaned[index] {
                    // Its mapping never came to be: demoted, nothing to unmap.
                    pending.handles[index] = invalidHandle
                    pending.unmapBitmap |= 1 << index
                    failed = true
                    continue
                }
                let isNew: Bool
                if handleZeroUnmapped {
                    isNew = scratch.records[index].map { handle(of: $0, segment: index, scratch, heapGeneration: heapGeneration) == 0 } ?? true
                } else {
                    isNew = scratch.opIndex[index] != nil
                }
                if isNew {
                    try kernel.bugOn(next >= results.count, "BUG_ON(j >= segs_to_map): j \(next), segs_to_map \(results.count)")
                    if results[next].status != .okay {
                        failed = true
                        if let record = scratch.records[index] {
                            tree.erase(record)
                            if !variant.has(.failedMapKeepsPage), let page = heap.read(record).page {
                                kernel.pages.free(page)
                            }
                            heap.free(record)
                            heapGeneration = heap.generation
                            scratch.records[index] = nil
                            if !variant.has(.duplicateDangles) {
                                for later in (index + 1)..<segments.count where scratch.records[later] == record {
                                    scratch.records[later] = nil
                                    scratch.orphaned[later] = true
                                }
                            }
                        }
                    }
                }
                if let record = scratch.records[index] {
                    if isNew {
                        tree.setHandle(results[next].handle, of: record)
                        heapGeneration = heap.generation
                        next += 1
                    }
                    pending.handles[index] = handle(of: record, segment: index, scratch, heapGeneration: heapGeneration)
                } else {
                    pending.handles[index] = next < results.count ? results[next].handle : invalidHandle
                    pending.unmapBitmap |= 1 << index
                    next += 1
                }
            }
            return failed ? .failed : .mapped
        }
    }
}

/// A record's handle as a live read gave it, and the heap generation then:
/// while the generation is the same, a read would give the same and observe nothing.
struct KnownHandle {
    var heapGeneration: UInt64
    var handle: GrantHandle
}
