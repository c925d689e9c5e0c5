import Blkif
import FakeXen

/// The part of a G2013 or G2018 connection that G2012 does not have
/// (docs/generations.md, G2013 "State", G2018 "State and helpers"): each
/// persistent grant's ACTIVE flag and what its generation keeps of its
/// past use (G2013: WAS_ACTIVE; G2018: `last_used`), the in-use count, the
/// overflow flag, when the next purge may run, the free-page pool's size,
/// and the entries of the requests in flight. The tree itself (gref →
/// handle) stays in the `ConnectionModel`, so that everything that reads a
/// tree reads it alike.
///
/// The pool is a count, not a list of pages: the oracle needs to know only
/// when a page must be allocated (the pool is empty), which is what
/// `fail alloc nth=K` counts.
final class G2013ConnectionState {
    private(set) var active: Set<GrantRef> = []
    /// G2013's WAS_ACTIVE; always empty under G2018, which has no such flag.
    private(set) var wasActive: Set<GrantRef> = []
    /// G2018's `last_used`: the jiffies of each grant's last put. Unset
    /// until the first put (G2018 "State and helpers": `add` leaves it).
    private(set) var lastUsed: [GrantRef: UInt64] = [:]
    /// Whether a put sets WAS_ACTIVE (G2013) or only `last_used` (G2018).
    let tracksWasActive: Bool
    /// Grants ACTIVE now (`persistent_gnt_in_use`).
    private(set) var inUse = 0
    /// A new grant found the tree full since the last purge.
    var overflow = false
    /// The purge may run once jiffies pass this (0 at connect).
    var nextLRU: UInt64 = 0
    /// Pages in the free-page pool.
    private(set) var poolPages = 0
    /// The map-step entries of each request held in flight (by the request
    /// object: several in flight may share an id): its completion's unmap
    /// step runs over them.
    var heldEntries: [ObjectIdentifier: [G2013Entry]] = [:]

    func isActive(_ gref: GrantRef) -> Bool { active.contains(gref) }
    func wasActiveSinceLastPurge(_ gref: GrantRef) -> Bool { wasActive.contains(gref) }

    /// A request starts using the grant (a hit, or a grant just added).
    func activate(_ gref: GrantRef) {
        active.insert(gref)
        inUse += 1
    }

    init(tracksWasActive: Bool = true) {
        self.tracksWasActive = tracksWasActive
    }

    /// `put_persistent_gnt` at `jiffies`: the request is done with the
    /// grant. G2013 sets WAS_ACTIVE; G2018 sets `last_used = jiffies`.
    func put(_ gref: GrantRef, at jiffies: UInt64) {
        active.remove(gref)
        if tracksWasActive { wasActive.insert(gref) } else { lastUsed[gref] = jiffies }
        inUse -= 1
    }

    /// The grant's `last_used` (G2018), nil before its first put.
    func lastUse(of gref: GrantRef) -> UInt64? { lastUsed[gref] }

    /// The grant left the tree.
    func forget(_ gref: GrantRef) {
        if active.remove(gref) != nil { inUse -= 1 }
        wasActive.remove(gref)
        lastUsed.removeValue(forKey: gref)
    }

    /// After a purge every grant left in the tree loses WAS_ACTIVE.
    func clearWasActive() { wasActive.removeAll(keepingCapacity: true) }

    /// `get_free_page`: a page off the pool, or a new one when it is
    /// empty; false when that allocation fails (ENOMEM).
    func takePage(allocating faults: inout AllocationFaultCountdown) -> Bool {
        if poolPages > 0 {
            poolPages -= 1
            return true
        }
        return !faults.allocate()
    }

    /// `put_free_pages`.
    func putPages(_ count: Int) { poolPages += count }

    /// `shrink_free_pagepool(max)`.
    func shrinkPool(to max: Int) { poolPages = min(poolPages, Swift.max(0, max)) }
}

/// One entry of a request's map step (a data segment, or the indirect
/// page): what its unmap step will find there.
enum G2013Entry: Hashable {
    /// An invalid handle and no grant: nothing to put or unmap.
    case none
    /// The entry uses this persistent grant: the unmap step puts it.
    case persistent(GrantRef)
    /// A mapping of this request alone: the unmap step unmaps it.
    case oneOff(GrantHandle)
}
