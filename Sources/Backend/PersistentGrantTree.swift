import Blkif
import FakeXen
import RedBlackTree

/// A connection's persistent grants: the red-black tree of records in the fake
/// heap (`persistent_gnts`), how many it holds (`persistent_gnt_c`) and a
/// version that observers use to skip an unchanged tree. Every change to the
/// tree or to a record in it goes through here, so the three cannot drift apart.
///
/// It only links, unlinks and rewrites records; allocating and freeing them and
/// their pages stays with the caller, whose order of heap accesses is the seed's.
struct PersistentGrantTree {
    private var tree = RedBlackTree<KernelAddress>()
    /// Reads and writes nodes through the heap, so that use-after-free is seen.
    private var store: PersistentGrantStore
    private(set) var count = 0
    /// Bumped whenever the tree or a record in it changes.
    private(set) var version: UInt64 = 0

    init(heap: KernelHeap<PersistentGrant>) {
        store = PersistentGrantStore(heap: heap)
    }

    var root: KernelAddress? { tree.root }
    var isEmpty: Bool { tree.isEmpty }

    /// The record for `gref`, or nil (`get_persistent_gnt`).
    func search(_ gref: GrantRef) -> KernelAddress? {
        var store = store
        return tree.search(gref, in: &store)
    }

    /// Links a fresh record (`add_persistent_gnt`); a duplicate gref is not linked or counted.
    mutating func insert(_ record: KernelAddress) -> RedBlackInsertion<KernelAddress> {
        let outcome = tree.insert(record, in: &store)
        if case .inserted = outcome {
            count += 1
            version &+= 1
        }
        return outcome
    }

    /// Unlinks a record; like `rb_erase`, the record's own links are left as they were.
    mutating func erase(_ record: KernelAddress) {
        tree.erase(record, in: &store)
        count -= 1
        version &+= 1
    }

    /// Records the handle a record's map returned.
    mutating func setHandle(_ handle: GrantHandle, of record: KernelAddress) {
        store.heap.modify(record) { $0.handle = handle }
        version &+= 1
    }

    /// The leftmost record (`rb_first`).
    func first() -> KernelAddress? {
        var store = store
        return tree.first(in: &store)
    }

    /// The in-order successor computed from `record`'s own links (`rb_next`), even if it was erased.
    func next(after record: KernelAddress) -> KernelAddress? {
        var store = store
        return tree.next(record, in: &store)
    }
}
