import Blkif
import FakeXen

/// `xen_blkbk_map` and `xen_blkbk_unmap` as docs/generations.md states them
/// (G2013 "The map step", "The unmap step"; G2018 keeps the map step and
/// changes the unmapping, "Unmapping"): the steps a request's entries go
/// through, on one connection, with the run's parameters and faults.
struct G2013GrantSteps {
    let model: ConnectionModel
    let grants: G2013ConnectionState
    let run: G2013Run

    /// The outcome of a map step: each entry as the unmap step will find
    /// it, and whether the step failed.
    struct Mapped {
        var entries: [G2013Entry]
        var failed: Bool
    }

    /// Maps `grefs` (one entry each) in batches of at most 11 new maps,
    /// stopping after a batch with a failure. `readOnly` is the caller's
    /// `ro`; only outside persistent mode does it make a map read-only.
    func map(_ grefs: [GrantRef], readOnly: Bool, calls: inout G2013Hypercalls,
             statistics: inout OracleStatistics) -> Mapped {
        let persistent = model.persistentMode
        var entries = [G2013Entry](repeating: .none, count: grefs.count)
        var mapUntil = 0
        while mapUntil < grefs.count {
            // The batch: entries from `mapUntil` until 11 maps are queued.
            var queued: [(entry: Int, gref: GrantRef)] = []
            var index = mapUntil
            while index < grefs.count && queued.count < Blkif.maxSegmentsPerRequest {
                let gref = grefs[index]
                // Found and not ACTIVE: a hit. Found and ACTIVE ("requesting
                // a grant already in use"): mapped again, as if not found.
                if persistent, model.persistentHandle(of: gref) != nil, !grants.isActive(gref) {
                    grants.activate(gref)
                    entries[index] = .persistent(gref)
                    statistics.persistentHits += 1
                } else if grants.takePage(allocating: &run.allocationFaults) {
                    queued.append((index, gref))
                } else {
                    // ENOMEM: the batch's pages go back, no hypercall; its
                    // queued entries keep no handle, its hits their grant.
                    grants.putPages(queued.count)
                    return Mapped(entries: entries, failed: true)
                }
                index += 1
                mapUntil = index
            }
            guard !queued.isEmpty else { continue }
            let handles = calls.map(queued.map { ExpectedMapOp(gref: $0.gref, readOnly: !persistent && readOnly) })
            var failed = false
            for ((entry, gref), handle) in zip(queued, handles) {
                guard let handle else {
                    // The page goes back; the entry keeps an invalid handle.
                    grants.putPages(1)
                    failed = true
                    continue
                }
                entries[entry] = persist(gref, handle: handle, statistics: &statistics)
            }
            if failed { return Mapped(entries: entries, failed: true) }
        }
        return Mapped(entries: entries, failed: false)
    }

    /// A map that succeeded becomes a persistent grant when it can: below
    /// the limit, with its record allocated, and its gref not in the tree.
    private func persist(_ gref: GrantRef, handle: GrantHandle, statistics: inout OracleStatistics) -> G2013Entry {
        guard model.persistentMode else {
            statistics.oneOff += 1
            return .oneOff(handle)
        }
        guard model.treeCount < run.parameters.maxPersistentGrants else {
            grants.overflow = true
            statistics.oneOff += 1
            statistics.overflowed += 1
            return .oneOff(handle)
        }
        // The record's allocation failing, or the gref already in the tree
        // ("trying to add a gref that's already in the tree"), leaves a one-off.
        if run.allocationFaults.allocate() || model.persistentHandle(of: gref) != nil {
            statistics.oneOff += 1
            return .oneOff(handle)
        }
        model.addPersistentGrant(gref, handle: handle)
        grants.activate(gref)
        statistics.newPersistent += 1
        return .persistent(gref)
    }

    /// `xen_blkbk_unmap`, the unmap step of the error paths (a failed
    /// map, the indirect page after parsing) and, in G2013, of completion
    /// too. G2013 "The unmap step": over all the entries, grants put and
    /// one-offs unmapped in hypercalls of at most 11 queued operations.
    /// G2018 "Unmapping": the entries in chunks of 11 *entries*, one
    /// hypercall per chunk that queued any one-off.
    func unmap(_ entries: [G2013Entry], calls: inout G2013Hypercalls) {
        guard run.isG2018 else {
            let handles = release(entries[...])
            calls.unmap(handles)
            grants.putPages(handles.count)
            return
        }
        var start = entries.startIndex
        while start < entries.endIndex {
            let end = min(start + Blkif.maxSegmentsPerRequest, entries.endIndex)
            unmapInOneHypercall(entries[start..<end], calls: &calls)
            start = end
        }
    }

    /// The unmap step of a request whose I/O completed. G2018
    /// (`xen_blkbk_unmap_and_respond`): every one-off of the request in
    /// one hypercall, none when there is none. G2013: its one unmap step.
    func unmapAtCompletion(_ entries: [G2013Entry], calls: inout G2013Hypercalls) {
        if run.isG2018 {
            unmapInOneHypercall(entries[...], calls: &calls)
        } else {
            unmap(entries, calls: &calls)
        }
    }

    /// `entries`' grants put and their one-offs unmapped by one hypercall
    /// (none if there is none), the pages back on the pool.
    private func unmapInOneHypercall(_ entries: ArraySlice<G2013Entry>, calls: inout G2013Hypercalls) {
        let handles = release(entries)
        calls.unmapInOneHypercall(handles)
        grants.putPages(handles.count)
    }

    /// Puts each entry's persistent grant, in entry order, and returns the
    /// one-offs' handles to unmap, in entry order.
    private func release(_ entries: ArraySlice<G2013Entry>) -> [GrantHandle] {
        var handles: [GrantHandle] = []
        for entry in entries {
            switch entry {
            case .persistent(let gref): grants.put(gref, at: run.jiffies)
            case .oneOff(let handle): handles.append(handle)
            case .none: break
            }
        }
        return handles
    }
}
