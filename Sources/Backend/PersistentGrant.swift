import Blkif
import FakeXen
import RedBlackTree

/// `struct persistent_gnt`: one persistently mapped grant, living in the fake
/// kernel heap and linked into the tree through its own node fields.
struct PersistentGrant: Poisonable {
    var page: PageFrame?
    var gref: GrantRef
    /// Zero straight from `kzalloc`, which is why the seed reads 0 as "not mapped yet".
    var handle: GrantHandle
    var links: RedBlackLinks<KernelAddress>
    /// G2013's `PERSISTENT_GNT_ACTIVE`: a request is using the grant now.
    var active = false
    /// G2013's `PERSISTENT_GNT_WAS_ACTIVE`: used since the last purge.
    var wasActive = false
    /// G2018's `last_used`: the jiffies of the last put (unset, 0, while
    /// the grant has been active since its add: a purge skips it then).
    var lastUsed: UInt64 = 0

    static func fresh(gref: GrantRef) -> PersistentGrant {
        PersistentGrant(page: nil, gref: gref, handle: 0, links: .detached)
    }

    /// What a read of long-freed memory gives: slab poison, no usable links.
    /// (The flags are bits of poisoned bytes: both set.)
    static var poisoned: PersistentGrant {
        PersistentGrant(page: nil, gref: 0x6b6b_6b6b, handle: 0x6b6b_6b6b, links: .detached, active: true,
                        wasActive: true, lastUsed: 0x6b6b_6b6b_6b6b_6b6b)
    }
}

/// Lets the tree walk records the way C walks `rb_node`s: every field read
/// and write goes through the heap, so a freed node is noticed.
struct PersistentGrantStore: RedBlackNodeStore {
    let heap: KernelHeap<PersistentGrant>
    /// Set once a walk took an observed read (a node that was not live).
    var tookObservedRead = false

    mutating func key(of node: KernelAddress) -> GrantRef {
        tookObservedRead = true
        return heap.read(node).gref
    }
    mutating func links(of node: KernelAddress) -> RedBlackLinks<KernelAddress> {
        tookObservedRead = true
        return heap.read(node).links
    }
    func setLinks(_ links: RedBlackLinks<KernelAddress>, of node: KernelAddress) {
        heap.modify(node) { $0.links = links }
    }
    /// A live record's reads observe nothing, so one peek stands for both; a freed one
    /// (nil here) goes through `key(of:)` and `links(of:)`, which report each access.
    func peekNode(_ node: KernelAddress) -> (key: GrantRef, links: RedBlackLinks<KernelAddress>)? {
        heap.peek(node).map { ($0.gref, $0.links) }
    }
}

/// `BLKBACK_INVALID_HANDLE`.
let invalidHandle: GrantHandle = ~0
