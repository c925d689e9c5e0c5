import Blkif
import FakeXen

/// G2013's request path (docs/generations.md, "Dispatch"): connect, the
/// ring, indirect descriptors, completion, and the thread loop that runs
/// after each ring event and tick.
extension Blkback {
    // MARK: xenbus

    /// `connect_ring` and `connect` of G2013: negotiation as in G2012, no
    /// reserved pages, the limit a module parameter.
    func connectG2013(_ parameters: ConnectParameters) {
        let vbd = parameters.vbd
        guard connections[vbd] == nil else { return }
        let backend = Xenstore.backendDirectory(domid: parameters.domid, vbd: vbd)
        xen.xenstore.write(backend + "/feature-max-indirect-segments", String(G2013State.maxIndirectSegments))
        let persistent = variant.generation == .g2018
            ? negotiateG2018(parameters)
            : negotiatePersistentGrants(parameters, frontendKey: "feature-persistent")
        let device = xen.attachDisk(vbd: vbd, sectors: parameters.sectors)
        let ring = SharedRing(vbd: vbd, ringProtocol: parameters.ringProtocol, log: xen.log)
        connections.add(Connection(g2013: parameters, persistentMode: persistent,
                                   maxPersistentAtConnect: xen.parameters.maxPersistentGrants, device: device,
                                   ring: ring, heap: heap))
        publish(.negotiated(vbd: vbd, persistent: persistent))
    }

    /// The frontend closes: in-flight I/O completes, then the grants are
    /// unmapped and the pool emptied (the other way round with `teardown-pool-leak`).
    func disconnectG2013(_ connection: Connection) throws(KernelPanic) {
        try connection.withState { (state: inout ConnectionState) throws(KernelPanic) in
            while let slot = state.g2013.inFlight.first { finishG2013(connection, &state, slot: slot) }
            if variant.has(.teardownPoolLeak) {
                shrinkPool(&state.g2013.pool, keeping: 0)
                try freePersistentGrantsG2013(&state)
            } else {
                try freePersistentGrantsG2013(&state)
                shrinkPool(&state.g2013.pool, keeping: 0)
            }
        }
    }

    /// `free_persistent_gnts`: ascending gref, hypercalls of at most 11 (the
    /// last node closes a partial one), pages back on the pool, records freed.
    private func freePersistentGrantsG2013(_ state: inout ConnectionState) throws(KernelPanic) {
        var ops: [UnmapOp] = []
        var pages: [PageFrame] = []
        var node = state.persistentGrants.first()
        // A corrupted tree must not hang the model (see the G2012 teardown).
        var budget = (heap.liveCount + max(state.persistentGrants.count, 0)) * 4 + 64
        while let current = node, budget > 0 {
            budget -= 1
            let record = heap.read(current)
            try xen.kernel.bugOn(record.handle == invalidHandle, "persistent grant \(record.gref) has an invalid handle")
            let page = record.page ?? PageFrame(0)
            ops.append(UnmapOp(hostPage: page, handle: record.handle))
            pages.append(page)
            let following = state.persistentGrants.next(after: current)
            if ops.count == Blkif.maxSegmentsPerRequest || following == nil {
                unmapBatch(&ops, &pages, into: &state.g2013.pool)
            }
            state.persistentGrants.erase(current)
            heap.free(current)
            node = following
        }
        try xen.kernel.bugOn(!state.persistentGrants.isEmpty, "the persistent grant tree is not empty after teardown")
    }

    // MARK: the ring

    /// One request from the ring, then the thread loop's body.
    func submitG2013(_ connection: Connection, _ request: G2013Request, hold: Bool) throws(KernelPanic) {
        try connection.withState { (state: inout ConnectionState) throws(KernelPanic) in
            try dispatchG2013(connection, &state, request, hold: hold)
            try threadLoop(connection, &state)
        }
    }

    /// `__do_block_io_op` for one request: a slot first, then by operation.
    private func dispatchG2013(_ connection: Connection, _ state: inout ConnectionState, _ request: G2013Request,
                               hold: Bool) throws(KernelPanic) {
        // The harness never puts more requests on the ring than it has slots.
        guard let slot = state.g2013.takeSlot() else {
            return respond(connection, id: request.id, operation: request.operation, status: .error)
        }
        switch BlkifOperation(rawValue: request.operation) {
        case .read, .write, .writeBarrier, .flushDiskcache, .indirect:
            try dispatchReadWriteG2013(connection, &state, request, slot: slot, hold: hold)
        case .discard:
            state.g2013.releaseSlot(slot)
            if case .direct(let discard) = request { dispatchDiscardG2013(connection, discard) }
        case .reserved, nil:
            // `dispatch_other_io`.
            state.g2013.releaseSlot(slot)
            respond(connection, id: request.id, operation: request.operation, status: .eopnotsupp)
        }
    }

    /// `dispatch_discard_io`: the range is checked first (`xen_vbd_translate`),
    /// then the device's support.
    private func dispatchDiscardG2013(_ connection: Connection, _ request: BlkifRequest) {
        let parameters = connection.parameters
        let (end, overflow) = request.sectorNumber.addingReportingOverflow(request.discardSectors)
        let status: BlkifResponseStatus
        if request.discardSectors != 0 && (overflow || end > parameters.sectors) {
            status = .error
        } else if !parameters.discard {
            status = .eopnotsupp
        } else {
            connection.device.discard(sector: request.sectorNumber, count: request.discardSectors)
            status = .okay
        }
        respond(connection, id: request.id, operation: request.operation, status: status)
    }

    /// `dispatch_rw_block_io` of G2013.
    private func dispatchReadWriteG2013(_ connection: Connection, _ state: inout ConnectionState, _ request: G2013Request,
                                        slot: Int, hold: Bool) throws(KernelPanic) {
        let operation: UInt8
        let nseg: Int
        let sector: UInt64
        switch request {
        case .direct(let direct):
            (operation, nseg, sector) = (direct.operation, Int(direct.nrSegments), direct.sectorNumber)
        case .indirect(let indirect):
            (operation, nseg, sector) = (indirect.indirectOperation, Int(indirect.nrSegments), indirect.sectorNumber)
        }
        func fail(_ status: BlkifResponseStatus = .error) {
            state.g2013.releaseSlot(slot)
            respond(connection, id: request.id, operation: operation, status: status)
        }
        let isIndirect: Bool
        if case .indirect = request { isIndirect = true } else { isIndirect = false }
        guard let known = BlkifOperation(rawValue: operation),
              isIndirect ? (known == .read || known == .write)
                         : (known == .read || known == .write || known.isFlushLike) else { return fail() }
        guard (nseg > 0 || known.isFlushLike),
              nseg <= (isIndirect ? G2013State.maxIndirectSegments : Blkif.maxSegmentsPerRequest) else { return fail() }
        state.g2013.slots[slot].id = request.id
        state.g2013.slots[slot].operation = operation
        state.g2013.slots[slot].nrPages = nseg
        var segments: [BlkifSegment] = []
        segments.reserveCapacity(nseg)
        switch request {
        case .direct(let direct):
            for index in 0..<nseg {
                let segment = direct.effectiveSegment(at: index)
                state.g2013.slots[slot].entries[index].gref = segment.gref
                guard segment.isWellFormed else { return fail() }
                segments.append(segment)
            }
        case .indirect(let indirect):
            guard try parseIndirect(connection, &state, indirect, slot: slot, count: nseg, into: &segments) else {
                return fail()
            }
        }
        // `xen_vbd_translate`: the sectors the segments say they move (for
        // a descriptor read twice, what the first read said).
        let total = segments.reduce(UInt64(0)) { $0 + UInt64(Int($1.lastSect) - Int($1.firstSect) + 1) }
        let (end, overflow) = sector.addingReportingOverflow(total)
        guard total == 0 || (!overflow && end <= connection.parameters.sectors) else { return fail() }
        if known.isFlushLike && !connection.parameters.flush { return fail(.eopnotsupp) }
        var entries = takeEntries(&state, slot: slot)
        let mapped = try mapEntries(connection, &state, &entries, count: nseg, readOnly: known != .read)
        guard mapped else {
            unmapEntries(&state, &entries, count: nseg)
            state.g2013.slots[slot].entries = entries
            return fail()
        }
        // Bios of at most 11 segments each, consecutive on the disk.
        var bios: [BioID] = []
        var pages: [PageFrame] = []
        var start = 0
        var bioSector = sector
        while start < segments.count {
            let chunk = Array(segments[start..<min(start + BlockDevice.maxSegmentsPerBio, segments.count)])
            pages.removeAll(keepingCapacity: true)
            for offset in chunk.indices { pages.append(entries[start + offset].page ?? PageFrame(0)) }
            bios.append(connection.device.submit(known == .read ? .read : .write, sector: bioSector, pages: pages,
                                                 segments: chunk))
            bioSector &+= chunk.reduce(UInt64(0)) { $0 + UInt64(Int($1.lastSect) - Int($1.firstSect) + 1) }
            start += chunk.count
        }
        state.g2013.slots[slot].entries = entries
        state.g2013.slots[slot].bios = bios
        state.g2013.inFlight.append(slot)
        if !hold { finishG2013(connection, &state, slot: slot) }
    }

    /// The slot's entries, moved out so that the map and unmap steps can work
    /// on them beside the rest of the state (put back by the caller).
    private func takeEntries(_ state: inout ConnectionState, slot: Int) -> [GrantEntry] {
        var entries: [GrantEntry] = []
        swap(&entries, &state.g2013.slots[slot].entries)
        return entries
    }

    /// `xen_blkbk_parse_indirect`: map the descriptor page, read `count`
    /// descriptors from it, unmap it. False when the map or a descriptor fails.
    private func parseIndirect(_ connection: Connection, _ state: inout ConnectionState,
                               _ request: BlkifIndirectRequest, slot: Int, count: Int,
                               into segments: inout [BlkifSegment]) throws(KernelPanic) -> Bool {
        var pageEntries: [GrantEntry] = []
        swap(&pageEntries, &state.g2013.slots[slot].indirectEntries)
        defer { swap(&pageEntries, &state.g2013.slots[slot].indirectEntries) }
        pageEntries[0].gref = request.indirectGrefs[0]
        var entries = takeEntries(&state, slot: slot)
        defer { state.g2013.slots[slot].entries = entries }
        var valid = try mapEntries(connection, &state, &pageEntries, count: 1, readOnly: true)
        if valid, let page = pageEntries[0].page {
            for index in 0..<count {
                let offset = index * blkifSegmentSize
                let gref = xen.grants.readGuestBytes(hostPage: page, offset: offset, count: 4)
                entries[index].gref = UInt32(gref[0]) | UInt32(gref[1]) << 8 | UInt32(gref[2]) << 16 | UInt32(gref[3]) << 24
                let used = xen.grants.readGuestBytes(hostPage: page, offset: offset + 4, count: 2)
                let segment = BlkifSegment(gref: entries[index].gref, firstSect: used[0], lastSect: used[1])
                // Linux 3.11 computed the segment from the first read and
                // checked a second one (XSA-155); the fix reads once.
                let checked: BlkifSegment
                if variant.has(.indirectDoubleFetch) {
                    let again = xen.grants.readGuestBytes(hostPage: page, offset: offset + 4, count: 2)
                    checked = BlkifSegment(gref: segment.gref, firstSect: again[0], lastSect: again[1])
                } else {
                    checked = segment
                }
                guard checked.isWellFormed else {
                    valid = false
                    break
                }
                segments.append(segment)
            }
        }
        unmapEntries(&state, &pageEntries, count: 1)
        return valid
    }

    /// The device finished the slot's bios: data moves, the entries are
    /// unmapped, the request is answered okay (`__end_block_io_op`).
    func finishG2013(_ connection: Connection, _ state: inout ConnectionState, slot: Int) {
        if let position = state.g2013.inFlight.firstIndex(of: slot) { state.g2013.inFlight.remove(at: position) }
        for bio in state.g2013.slots[slot].bios { connection.device.complete(bio) }
        state.g2013.slots[slot].bios.removeAll()
        var entries = takeEntries(&state, slot: slot)
        if variant.generation == .g2018 {
            unmapCompletedEntries(&state, &entries, count: state.g2013.slots[slot].nrPages)
        } else {
            unmapEntries(&state, &entries, count: state.g2013.slots[slot].nrPages)
        }
        state.g2013.slots[slot].entries = entries
        state.g2013.releaseSlot(slot)
        respond(connection, id: state.g2013.slots[slot].id, operation: state.g2013.slots[slot].operation, status: .okay)
    }

    /// The device finishes the oldest in-flight request with this id.
    func completeG2013(_ connection: Connection, id: UInt64) {
        connection.withState { (state: inout ConnectionState) in
            guard let slot = state.g2013.oldestInFlight(id: id) else { return }
            finishG2013(connection, &state, slot: slot)
        }
    }

    // MARK: the thread

    /// Time passed: every connection's thread runs its loop once.
    func timePassedG2013() throws(KernelPanic) {
        for connection in connections.all {
            try connection.withState { (state: inout ConnectionState) throws(KernelPanic) in
                try threadLoop(connection, &state)
            }
        }
    }

    /// The body of `xen_blkif_schedule`'s loop after the requests: the purge
    /// when its time has come, then the pool shrunk to `max_buffer_pages`.
    func threadLoop(_ connection: Connection, _ state: inout ConnectionState) throws(KernelPanic) {
        if state.persistentMode && xen.clock.isAfter(state.g2013.nextLRU) {
            if variant.generation == .g2018 { try purgeByAge(&state) } else { try purge(connection, &state) }
            state.g2013.nextLRU = xen.clock.jiffies &+ G2013State.lruInterval
        }
        shrinkPool(&state.g2013.pool, keeping: xen.parameters.maxBufferPages)
    }

    /// `purge_persistent_gnt` and, at once, the work that unmaps its victims.
    private func purge(_ connection: Connection, _ state: inout ConnectionState) throws(KernelPanic) {
        let count = state.persistentGrants.count
        let wanted = purgeShare(state)
        guard wanted != 0, wanted <= count - state.g2013.inUse else { return }
        var victims: [KernelAddress] = []
        // Pass 1 skips grants used since the last purge; pass 2 takes them too.
        for takesUsed in [false, true] where victims.count < wanted {
            var node = state.persistentGrants.first()
            while let current = node, victims.count < wanted {
                let record = heap.read(current)
                try xen.kernel.bugOn(record.handle == invalidHandle, "persistent grant \(record.gref) has an invalid handle")
                node = state.persistentGrants.next(after: current)
                if record.active || (!takesUsed && record.wasActive) { continue }
                state.persistentGrants.erase(current)
                victims.append(current)
            }
        }
        // Every grant left forgets it was used.
        var node = state.persistentGrants.first()
        while let current = node {
            node = state.persistentGrants.next(after: current)
            state.persistentGrants.modifyRecord(current) { $0.wasActive = false }
        }
        state.g2013.overflow = false
        unmapPurged(victims, &state)
    }

    /// `num_clean` of both generations' purges: 0 under the limit, or at it
    /// without overflow; else `(max / 100) × 5` more than the tree is over,
    /// at most the whole tree (integer division first: 1056 → 50).
    private func purgeShare(_ state: ConnectionState) -> Int {
        let count = state.persistentGrants.count
        let limit = xen.parameters.maxPersistentGrants
        guard count > limit || (count == limit && state.g2013.overflow) else { return 0 }
        return min(count, (limit / 100) * G2013State.lruPercentClean + count - limit)
    }

    /// G2018's `purge_persistent_gnt`: every inactive grant unused for
    /// `persistent_grant_unused_seconds`, however many, then inactive ones
    /// of any age up to the number the limit asks for; the rest untouched.
    private func purgeByAge(_ state: inout ConnectionState) throws(KernelPanic) {
        let wanted = purgeShare(state)
        let timeout = UInt64(xen.parameters.persistentGrantUnusedSeconds) * 1000
        let now = xen.clock.jiffies
        var victims: [KernelAddress] = []
        for takesUsed in [false, true] where !takesUsed || victims.count < wanted {
            var node = state.persistentGrants.first()
            while let current = node {
                let record = heap.read(current)
                try xen.kernel.bugOn(record.handle == invalidHandle, "persistent grant \(record.gref) has an invalid handle")
                node = state.persistentGrants.next(after: current)
                if record.active { continue }
                if takesUsed {
                    if victims.count >= wanted { continue }
                } else if timeout == 0 || now &- record.lastUsed < timeout {
                    continue
                }
                state.persistentGrants.erase(current)
                victims.append(current)
            }
        }
        guard !victims.isEmpty else { return }
        state.g2013.overflow = false
        unmapPurged(victims, &state)
    }

    /// `unmap_purged_grants`, run at once: the list was built at its head,
    /// so the last victim chosen is unmapped first; hypercalls of 11.
    private func unmapPurged(_ victims: [KernelAddress], _ state: inout ConnectionState) {
        var ops: [UnmapOp] = []
        var pages: [PageFrame] = []
        for victim in victims.reversed() {
            let record = heap.read(victim)
            let page = record.page ?? PageFrame(0)
            ops.append(UnmapOp(hostPage: page, handle: record.handle))
            pages.append(page)
            if ops.count == Blkif.maxSegmentsPerRequest { unmapBatch(&ops, &pages, into: &state.g2013.pool) }
            heap.free(victim)
        }
        if !ops.isEmpty { unmapBatch(&ops, &pages, into: &state.g2013.pool) }
    }
}
