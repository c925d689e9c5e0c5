import Blkif
import FakeXen

/// The G2013 thread's periodic work and its teardown (docs/generations.md,
/// G2013 "The thread loop", "Purge", "Disconnect"), which G2018 keeps but
/// for the purge's choice of victims (G2018 "Purge").
extension G2013GrantSteps {
    /// One pass of the loop body: the purge when its time has come, then
    /// the pool shrunk to `max_buffer_pages`.
    func runThreadLoop(calls: inout G2013Hypercalls) {
        if model.persistentMode && run.jiffies > grants.nextLRU {
            purge(calls: &calls)
            grants.nextLRU = run.jiffies &+ 100
        }
        grants.shrinkPool(to: run.parameters.maxBufferPages)
    }

    /// `purge_persistent_gnt`. G2013: when the tree is over the limit (or
    /// at it after an overflow), the grants unused since the last purge go
    /// first, lowest gref first, and every grant left forgets its use.
    /// G2018: the timed-out grants go, and more if the tree is over its
    /// limit; nothing left in the tree changes, and the overflow flag stays
    /// when nothing went.
    func purge(calls: inout G2013Hypercalls) {
        let limit = run.parameters.maxPersistentGrants
        let victims: [GrantRef]
        if run.isG2018 {
            victims = G2018Purge.victims(model: model, grants: grants, limit: limit, jiffies: run.jiffies,
                                         unusedSeconds: run.parameters.persistentGrantUnusedSeconds)
            guard !victims.isEmpty else { return }
        } else {
            guard let chosen = G2013Purge.victims(model: model, grants: grants, limit: limit) else { return }
            victims = chosen
            grants.clearWasActive()
        }
        grants.overflow = false
        // The work item unmaps them from the head of the list each was
        // pushed on: the reverse of the order they were chosen in.
        var handles: [GrantHandle] = []
        for gref in victims.reversed() {
            if let handle = model.persistentHandle(of: gref) { handles.append(handle) }
            model.removePersistentGrant(gref)
            grants.forget(gref)
        }
        calls.unmap(handles)
        grants.putPages(handles.count)
    }

    /// Disconnect, once the requests in flight completed: every grant
    /// unmapped in ascending gref, in hypercalls of at most 11, then the
    /// pool emptied.
    func tearDown(calls: inout G2013Hypercalls) {
        let grefs = model.tree.ascendingGrefs
        var handles: [GrantHandle] = []
        for gref in grefs {
            if let handle = model.persistentHandle(of: gref) { handles.append(handle) }
            model.removePersistentGrant(gref)
            grants.forget(gref)
        }
        calls.unmap(handles)
        grants.putPages(handles.count)
        grants.shrinkPool(to: 0)
    }
}

/// Which grants a purge takes, as a pure function of the tree and its flags.
enum G2013Purge {
    /// How many grants the purge must take: nil when it takes none.
    static func cleanCount(count: Int, inUse: Int, limit: Int, overflow: Bool) -> Int? {
        // G2018 keeps the count and drops the bail-outs.
        let clean = G2018Purge.cleanCount(count: count, limit: limit, overflow: overflow)
        if clean == 0 || clean > count - inUse { return nil }
        return clean
    }

    /// The victims in the order they are chosen: ascending gref, first
    /// those neither ACTIVE nor WAS_ACTIVE, then (a second walk from the
    /// start) any not ACTIVE; nil when the purge takes none.
    static func victims(model: ConnectionModel, grants: G2013ConnectionState, limit: Int) -> [GrantRef]? {
        guard let wanted = cleanCount(count: model.treeCount, inUse: grants.inUse, limit: limit,
                                      overflow: grants.overflow) else { return nil }
        let grefs = model.tree.ascendingGrefs
        var chosen: [GrantRef] = []
        var taken = Set<GrantRef>()
        for gref in grefs where chosen.count < wanted {
            if !grants.isActive(gref) && !grants.wasActiveSinceLastPurge(gref) {
                chosen.append(gref)
                taken.insert(gref)
            }
        }
        for gref in grefs where chosen.count < wanted {
            if !grants.isActive(gref) && !taken.contains(gref) { chosen.append(gref) }
        }
        return chosen
    }
}
