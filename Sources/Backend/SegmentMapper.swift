import Blkif
import FakeXen

/// `xen_blkbk_map` for one request: decide per segment between a persistent
/// hit, a new persistent grant and a one-off mapping; map all new ones in one
/// batch; then match results back to segments.
struct SegmentMapper {
    enum Outcome {
        /// The page each segment's I/O goes through.
        case mapped(pages: [PageFrame])
        /// A map failed or memory ran out: the request fails.
        case failed
    }

    let backend: Blkback
    let connection: Connection
    let slot: Int
    let segments: [BlkifSegment]
    let isRead: Bool

    private var heap: KernelHeap<PersistentGrant> { backend.heap }
    private var kernel: FakeKernel { backend.xen.kernel }
    private var variant: BackendVariant { backend.variant }

    /// Per segment: the persistent record it uses, if any.
    private var records: [KernelAddress?] = []
    /// Per segment: the index of its op in the batch, if it queued one.
    private var opIndex: [Int?] = []
    private var pages: [PageFrame] = []
    private var ops: [MapOp] = []
    /// Records this request put in the tree, for rolling back on ENOMEM.
    private var inserted: [KernelAddress] = []

    init(backend: Blkback, connection: Connection, slot: Int, segments: [BlkifSegment], isRead: Bool) {
        self.backend = backend
        self.connection = connection
        self.slot = slot
        self.segments = segments
        self.isRead = isRead
    }

    mutating func map() throws(KernelPanic) -> Outcome {
        try kernel.bugOn(connection.persistentGrants.count > connection.maxPersistent,
                         "persistent_gnt_c \(connection.persistentGrants.count) > max \(connection.maxPersistent)")
        guard try decideSegments() else { return try outOfMemory() }
        let results = try issueBatch()
        return try matchResults(results)
    }

    // MARK: first pass

    /// Returns false when an allocation failed.
    private mutating func decideSegments() throws(KernelPanic) -> Bool {
        let persistent = connection.persistentMode
        let reserved = connection.slots[slot].reservedPages
        records.reserveCapacity(segments.count)
        for (index, segment) in segments.enumerated() {
            var record: KernelAddress? = nil
            if persistent { record = connection.persistentGrants.search(segment.gref) }
            var hostPage: PageFrame
            var newMap: Bool
            if let hit = record {
                newMap = false
                hostPage = heap.read(hit).page ?? reserved[index]
            } else if persistent && connection.persistentGrants.count < connection.maxPersistent {
                guard let fresh = heap.allocate(.fresh(gref: segment.gref), owner: connection.owner) else { return false }
                guard let page = kernel.pages.allocate(owner: connection.owner) else {
                    heap.free(fresh)
                    return false
                }
                heap.modify(fresh) { $0.page = page }
                if case .duplicate = connection.persistentGrants.insert(fresh) {
                    try kernel.bug("trying to add a gref that's already in the tree")
                }
                inserted.append(fresh)
                record = fresh
                hostPage = page
                newMap = true
            } else {
                if persistent && !connection.overflowAlerted {
                    connection.overflowAlerted = true
                    kernel.alert("domain \(connection.parameters.domid), device \(connection.parameters.vbd) is using maximum number of persistent grants")
                }
                hostPage = reserved[index]
                newMap = true
            }
            records.append(record)
            pages.append(hostPage)
            if newMap {
                var flags: GrantMapFlags = .hostMap
                // Persistent grants are mapped writable: later requests may read into them.
                if record == nil && !isRead { flags.insert(.readOnly) }
                opIndex.append(ops.count)
                ops.append(MapOp(hostPage: hostPage, flags: flags, gref: segment.gref, domid: connection.parameters.domid))
            } else {
                opIndex.append(nil)
            }
        }
        return true
    }

    /// ENOMEM in the middle of the first pass.
    private mutating func outOfMemory() throws(KernelPanic) -> Outcome {
        if variant.has(.enomemNoRollback) {
            // The seed returns at once: records stay in the tree unmapped, and
            // the bitmap is whatever the slot's previous request left.
            return .failed
        }
        for record in inserted.reversed() {
            connection.persistentGrants.erase(record)
            if let page = heap.read(record).page { kernel.pages.free(page) }
            heap.free(record)
        }
        connection.slots[slot].unmapBitmap = 0
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

    private mutating func matchResults(_ results: [MapResult]) throws(KernelPanic) -> Outcome {
        connection.slots[slot].unmapBitmap = 0
        var failed = false
        var next = 0
        /// Segments that shared a new record whose map failed (fixed logic only).
        var orphaned = [Bool](repeating: false, count: segments.count)
        for index in segments.indices {
            if orphaned[index] {
                // Its mapping never came to be: demoted, nothing to unmap.
                connection.slots[slot].handles[index] = invalidHandle
                connection.slots[slot].unmapBitmap |= 1 << index
                failed = true
                continue
            }
            let isNew: Bool
            if variant.has(.handleZeroUnmapped) {
                isNew = records[index].map { heap.read($0).handle == 0 } ?? true
            } else {
                isNew = opIndex[index] != nil
            }
            if isNew {
                try kernel.bugOn(next >= results.count, "BUG_ON(j >= segs_to_map): j \(next), segs_to_map \(results.count)")
                if results[next].status != .okay {
                    failed = true
                    if let record = records[index] {
                        connection.persistentGrants.erase(record)
                        if !variant.has(.failedMapKeepsPage), let page = heap.read(record).page {
                            kernel.pages.free(page)
                        }
                        heap.free(record)
                        records[index] = nil
                        if !variant.has(.duplicateDangles) {
                            for later in (index + 1)..<segments.count where records[later] == record {
                                records[later] = nil
                                orphaned[later] = true
                            }
                        }
                    }
                }
            }
            if let record = records[index] {
                if isNew {
                    connection.persistentGrants.setHandle(results[next].handle, of: record)
                    next += 1
                }
                connection.slots[slot].handles[index] = heap.read(record).handle
            } else {
                connection.slots[slot].handles[index] = next < results.count ? results[next].handle : invalidHandle
                connection.slots[slot].unmapBitmap |= 1 << index
                next += 1
            }
        }
        return failed ? .failed : .mapped(pages: pages)
    }
}
