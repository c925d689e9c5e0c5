import Blkif
import FakeXen

/// Which grants a G2018 purge takes (docs/generations.md, G2018 "Purge"),
/// as a pure function of the tree, its flags and the clock: grants idle
/// for too long go first, all of them, then idle grants of any age until
/// the purge has taken as many as the tree is over its limit.
enum G2018Purge {
    /// How many grants the purge must take at least (`num_clean`, step 1):
    /// 0 below the limit, or at it without overflow. Unlike G2013's there is
    /// no bail-out when too few grants are unused.
    static func cleanCount(count: Int, limit: Int, overflow: Bool) -> Int {
        if count < limit || (count == limit && !overflow) { return 0 }
        // Integer division first: 1056 → 50.
        return min(count, (limit / 100) * 5 + count - limit)
    }

    /// A grant last put at `lastUsed` is timed out at `jiffies` when the
    /// parameter is not 0 and it has been idle `1000 × seconds` jiffies or
    /// more (HZ 1000). The product is taken exactly, as the spec writes it
    /// (see the G2018 "Decisions" in docs/generations.md).
    static func isTimedOut(lastUsed: UInt64, jiffies: UInt64, unusedSeconds: UInt64) -> Bool {
        guard unusedSeconds != 0 else { return false }
        let (idleLimit, overflow) = unusedSeconds.multipliedReportingOverflow(by: 1000)
        // jiffies only grow (the trace's clock saturates), so no put lies ahead.
        return !overflow && jiffies &- lastUsed >= idleLimit
    }

    /// The victims in the order they are chosen: in ascending gref, every
    /// grant neither active nor timed out is skipped and every other idle
    /// one taken, however many (step 2, even when `cleanCount` is 0); then,
    /// if fewer than `cleanCount` were taken, a second walk from the start
    /// takes idle grants of any age until there are that many (step 3).
    static func victims(model: ConnectionModel, grants: G2013ConnectionState, limit: Int, jiffies: UInt64,
                        unusedSeconds: UInt64) -> [GrantRef] {
        let wanted = cleanCount(count: model.treeCount, limit: limit, overflow: grants.overflow)
        let grefs = model.tree.ascendingGrefs
        var chosen: [GrantRef] = []
        var taken = Set<GrantRef>()
        for gref in grefs where !grants.isActive(gref) {
            // An inactive grant has been put at least once (an added grant
            // is active until its request puts it), so `last_used` is set.
            guard let lastUsed = grants.lastUse(of: gref),
                  isTimedOut(lastUsed: lastUsed, jiffies: jiffies, unusedSeconds: unusedSeconds)
            else { continue }
            chosen.append(gref)
            taken.insert(gref)
        }
        for gref in grefs where chosen.count < wanted {
            if !grants.isActive(gref) && !taken.contains(gref) { chosen.append(gref) }
        }
        return chosen
    }
}
