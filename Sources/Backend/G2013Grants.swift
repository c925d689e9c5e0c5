import Blkif
import FakeXen

/// G2013's page pool and persistent-grant helpers, and its map and unmap
/// steps (`xen_blkbk_map`, `xen_blkbk_unmap`), as docs/generations.md
/// describes them. Quirks are consulted where Linux 3.11–3.13 differs from
/// the fixed code.
extension Blkback {
    // MARK: the pool

    /// `get_free_page`: the pool's top page, or a fresh one when it is empty
    /// (nil when that allocation fails: ENOMEM).
    func takePoolPage(_ connection: Connection, _ pool: inout [PageFrame]) -> PageFrame? {
        if let page = pool.popLast() { return page }
        return xen.kernel.pages.allocate(owner: connection.owner)
    }

    /// `shrink_free_pagepool`: pages beyond `keep` are freed, top first.
    func shrinkPool(_ pool: inout [PageFrame], keeping keep: Int) {
        while pool.count > max(keep, 0), let page = pool.popLast() { xen.kernel.pages.free(page) }
    }

    // MARK: persistent grants

    /// `get_persistent_gnt`: the grant of `gref`, made ACTIVE; nil when it is
    /// not in the tree or is ACTIVE already (a request uses it).
    func getPersistentGrant(_ gref: GrantRef, _ state: inout ConnectionState) -> KernelAddress? {
        guard let found = state.persistentGrants.search(gref) else { return nil }
        if heap.read(found).active {
            xen.kernel.alert("requesting a grant already in use")
            return nil
        }
        state.persistentGrants.modifyRecord(found) { $0.active = true }
        state.g2013.inUse += 1
        return found
    }

    /// `put_persistent_gnt`: the grant is no longer used by this request.
    /// A stale pointer's record may be freed: the heap observes it.
    func putPersistentGrant(_ grant: KernelAddress, _ state: inout ConnectionState) {
        if !heap.read(grant).active { xen.kernel.alert("freeing a grant already unused") }
        // G2013 marks the grant used since the last purge; G2018 notes when.
        let notesTime = variant.generation == .g2018
        let now = xen.clock.jiffies
        state.persistentGrants.modifyRecord(grant) {
            if notesTime { $0.lastUsed = now } else { $0.wasActive = true }
            $0.active = false
        }
        state.g2013.inUse -= 1
    }

    /// `add_persistent_gnt`: links a fresh record as an ACTIVE grant; false
    /// (the caller frees it) when the tree is full or has the gref.
    func addPersistentGrant(_ record: KernelAddress, _ state: inout ConnectionState) -> Bool {
        guard state.persistentGrants.count < xen.parameters.maxPersistentGrants else {
            state.g2013.overflow = true
            return false
        }
        if case .duplicate = state.persistentGrants.insert(record) {
            xen.kernel.alert("trying to add a gref that's already in the tree")
            return false
        }
        state.persistentGrants.modifyRecord(record) {
            $0.active = true
            $0.wasActive = false
        }
        state.g2013.inUse += 1
        return true
    }

    // MARK: the map step

    /// `xen_blkbk_map` over `entries[0..<count]`; true when every entry has a
    /// mapping (or the `lost-map-error` quirk forgot that one has not).
    func mapEntries(_ connection: Connection, _ state: inout ConnectionState, _ entries: inout [GrantEntry],
                    count: Int, readOnly ro: Bool) throws(KernelPanic) -> Bool {
        let persistent = state.persistentMode
        let domid = connection.parameters.domid
        let forgetsErrors = variant.has(.lostMapError)
        var mapUntil = 0
        var lastMap = 0
        var failed = false
        var ops: [MapOp] = []
        var opEntries: [Int] = []
        while true {
            ops.removeAll(keepingCapacity: true)
            opEntries.removeAll(keepingCapacity: true)
            var index = mapUntil
            while index < count {
                if persistent, let hit = getPersistentGrant(entries[index].gref, &state) {
                    entries[index].page = heap.read(hit).page
                    entries[index].grant = hit
                } else {
                    guard let page = takePoolPage(connection, &state.g2013.pool) else {
                        return outOfMemory(&state, &entries, batchPages: ops.map(\.hostPage), lastMap: lastMap,
                                           mapUntil: mapUntil, count: count)
                    }
                    entries[index].page = page
                    entries[index].grant = nil
                    var flags: GrantMapFlags = .hostMap
                    if !persistent && ro { flags.insert(.readOnly) }
                    ops.append(MapOp(hostPage: page, flags: flags, gref: entries[index].gref, domid: domid))
                    opEntries.append(index)
                }
                mapUntil = index + 1
                index += 1
                if ops.count == Blkif.maxSegmentsPerRequest { break }
            }
            if !ops.isEmpty {
                let results = xen.grants.map(ops)
                if results == nil && variant.has(.bugOnHypercallError) {
                    try xen.kernel.bug("BUG_ON(ret) after gnttab_map_refs")
                }
                // Before XSA-365 each hypercall's return value replaced the
                // step's result: what an earlier batch failed is forgotten.
                if forgetsErrors { failed = false }
                if results == nil { failed = true }
                for (position, entry) in opEntries.enumerated() {
                    let result = results?[position] ?? MapResult(status: .generalError, handle: invalidHandle)
                    guard result.status == .okay else {
                        entries[entry].handle = invalidHandle
                        if !variant.has(.failedMapKeepsPage), let page = entries[entry].page {
                            state.g2013.pool.append(page)
                        }
                        failed = true
                        continue
                    }
                    entries[entry].handle = result.handle
                    keepPersistently(connection, &state, &entries[entry], persistent: persistent)
                }
            }
            lastMap = mapUntil
            let goesOn = forgetsErrors ? mapUntil != count : !failed && mapUntil != count
            if !goesOn { break }
        }
        invalidate(&entries, from: lastMap, pointersFrom: pointersClearedFrom(lastMap: lastMap, mapUntil: mapUntil),
                   count: count)
        return !failed
    }

    /// Where the step's exit starts clearing grant pointers: `map_until`
    /// since XSA-371's fix; the first XSA-365 fix cleared them from
    /// `last_map`, the current batch's persistent hits included.
    private func pointersClearedFrom(lastMap: Int, mapUntil: Int) -> Int {
        variant.has(.activeGrantZapped) ? lastMap : mapUntil
    }

    /// The second pass for an entry that mapped: in persistent mode with
    /// room, it becomes a persistent grant (a failed allocation or a refused
    /// add leaves it a one-off); without room, overflow is noted.
    private func keepPersistently(_ connection: Connection, _ state: inout ConnectionState, _ entry: inout GrantEntry,
                                  persistent: Bool) {
        guard persistent else { return }
        guard state.persistentGrants.count < xen.parameters.maxPersistentGrants else {
            state.g2013.overflow = true
            return
        }
        var record = PersistentGrant.fresh(gref: entry.gref)
        record.handle = entry.handle
        record.page = entry.page
        guard let address = heap.allocate(record, owner: connection.owner) else { return }
        guard addPersistentGrant(address, &state) else {
            heap.free(address)
            return
        }
        entry.grant = address
    }

    /// ENOMEM while a batch was being filled: its pages go back to the pool
    /// and the step fails. The fixed code then leaves the entries past the
    /// failure clean; Linux 3.11 left them as the slot's previous request did.
    private func outOfMemory(_ state: inout ConnectionState, _ entries: inout [GrantEntry], batchPages: [PageFrame],
                             lastMap: Int, mapUntil: Int, count: Int) -> Bool {
        state.g2013.pool.append(contentsOf: batchPages)
        if !variant.has(.staleGrantPointers) {
            invalidate(&entries, from: lastMap, pointersFrom: pointersClearedFrom(lastMap: lastMap, mapUntil: mapUntil),
                       count: count)
        }
        return false
    }

    /// The step's exit (`out:`): entries from `from` get an invalid handle,
    /// and those from `pointersFrom` lose their grant pointer.
    private func invalidate(_ entries: inout [GrantEntry], from start: Int, pointersFrom pointers: Int, count: Int) {
        guard start < count else { return }
        for index in start..<count {
            if index >= pointers { entries[index].grant = nil }
            entries[index].handle = invalidHandle
        }
    }

    // MARK: the unmap step

    /// `xen_blkbk_unmap` over `entries[0..<count]`: grants are put, one-offs
    /// with a handle unmapped (hypercalls of at most 11, their pages back on
    /// the pool), and their handles made invalid.
    func unmapEntries(_ state: inout ConnectionState, _ entries: inout [GrantEntry], count: Int) {
        if variant.generation == .g2018 { return unmapEntriesInChunks(&state, &entries, count: count) }
        var ops: [UnmapOp] = []
        var pages: [PageFrame] = []
        for index in 0..<count {
            prepareUnmap(&state, &entries, index..<index + 1, ops: &ops, pages: &pages)
            if ops.count == Blkif.maxSegmentsPerRequest {
                unmapBatch(&ops, &pages, into: &state.g2013.pool)
            }
        }
        if !ops.isEmpty { unmapBatch(&ops, &pages, into: &state.g2013.pool) }
    }

    /// G2018's `xen_blkbk_unmap` (the error paths): chunks of 11 entries,
    /// one hypercall for each chunk that has anything to unmap.
    private func unmapEntriesInChunks(_ state: inout ConnectionState, _ entries: inout [GrantEntry], count: Int) {
        var ops: [UnmapOp] = []
        var pages: [PageFrame] = []
        var start = 0
        while start < count {
            let end = min(start + Blkif.maxSegmentsPerRequest, count)
            prepareUnmap(&state, &entries, start..<end, ops: &ops, pages: &pages)
            if !ops.isEmpty { unmapBatch(&ops, &pages, into: &state.g2013.pool) }
            start = end
        }
    }

    /// G2018's `xen_blkbk_unmap_and_respond`: every one-off of the request
    /// in one hypercall (none when there is none), its pages back on the pool.
    func unmapCompletedEntries(_ state: inout ConnectionState, _ entries: inout [GrantEntry], count: Int) {
        var ops: [UnmapOp] = []
        var pages: [PageFrame] = []
        prepareUnmap(&state, &entries, 0..<count, ops: &ops, pages: &pages)
        if !ops.isEmpty { unmapBatch(&ops, &pages, into: &state.g2013.pool) }
    }

    /// `xen_blkbk_unmap_prepare` (G2018's name; G2013 did the same per
    /// entry inline): grants are put; one-offs with a handle are queued and
    /// their handles made invalid.
    private func prepareUnmap(_ state: inout ConnectionState, _ entries: inout [GrantEntry], _ range: Range<Int>,
                              ops: inout [UnmapOp], pages: inout [PageFrame]) {
        for index in range {
            if let grant = entries[index].grant {
                putPersistentGrant(grant, &state)
                continue
            }
            guard entries[index].handle != invalidHandle else { continue }
            // A zeroed entry has no page: its unmap names frame 0, as C's would name NULL's.
            let page = entries[index].page ?? PageFrame(0)
            ops.append(UnmapOp(hostPage: page, handle: entries[index].handle))
            pages.append(page)
            entries[index].handle = invalidHandle
        }
    }

    /// One unmap hypercall; its pages go back on the pool. (`BUG_ON(ret)`
    /// after it concerns the hypercall, which the fake Xen never fails as a
    /// whole; each operation's own failure is not looked at.)
    func unmapBatch(_ ops: inout [UnmapOp], _ pages: inout [PageFrame], into pool: inout [PageFrame]) {
        xen.grants.unmap(ops)
        pool.append(contentsOf: pages)
        ops.removeAll(keepingCapacity: true)
        pages.removeAll(keepingCapacity: true)
    }
}
