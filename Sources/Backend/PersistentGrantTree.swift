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

    /// Searches already walked, by gref, each valid while the heap and the
    /// tree are exactly as they were then.
    private var searches = SearchMemo()

    /// The record for `gref`, or nil (`get_persistent_gnt`).
    ///
    /// A search reads only the tree's root and heap memory. When neither has
    /// changed since the same search walked the tree observing nothing (every
    /// node it visited was live), walking again would give the same result and
    /// observe nothing again: the remembered result is that walk's, not a
    /// shortcut past a check. Any observed read keeps the search unremembered.
    mutating func search(_ gref: GrantRef) -> KernelAddress? { searchRecord(gref).address }

    /// The record for `gref`, as `search` finds it, and with it the record's
    /// page and handle when reading them would observe nothing (the record is
    /// live, as the walk found it, and the heap has not changed since): then
    /// the caller need not read them again. `live` is nil when the walk
    /// observed something; the caller's own read then observes it too.
    mutating func searchRecord(_ gref: GrantRef) -> (address: KernelAddress?, live: LiveGrantFields?) {
        searchRecord(gref, heapGeneration: store.heap.generation)
    }

    /// `searchRecord(_:)` for a caller that holds the heap's generation as it
    /// is now (a per-segment loop reads it once, not once per segment).
    ///
    /// The remembered answer, the usual one, is inlined into the caller's
    /// per-segment loop (the call and the result returned through memory
    /// cost more than the memo's lookup); the walk stays out of line.
    @inline(__always)
    mutating func searchRecord(_ gref: GrantRef, heapGeneration: UInt64)
        -> (address: KernelAddress?, live: LiveGrantFields?) {
        assert(heapGeneration == store.heap.generation, "a search with a stale heap generation")
        let state = SearchMemo.State(heapGeneration: heapGeneration, treeVersion: version)
        if let remembered = searches.result(for: gref, in: state) { return remembered }
        return walkAndRemember(gref, in: state)
    }

    /// The walk of a search the memo cannot answer, remembered when it observed nothing.
    @inline(never)
    private mutating func walkAndRemember(_ gref: GrantRef, in state: SearchMemo.State)
        -> (address: KernelAddress?, live: LiveGrantFields?) {
        var walker = store
        walker.tookObservedRead = false
        let found = tree.search(gref, in: &walker)
        guard !walker.tookObservedRead else { return (found, nil) }
        // The walk read only live records, the found one among them: a peek
        // now (nothing changed since) reads what it did and observes nothing.
        let live = found.flatMap { store.heap.peek($0) }.map { LiveGrantFields(page: $0.page, handle: $0.handle) }
        searches.remember(found, live, for: gref, in: state)
        return (found, live)
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

    /// Rewrites a record's own fields (G2013's flags) through the heap: a
    /// freed record's write is observed there.
    mutating func modifyRecord(_ record: KernelAddress, _ change: (inout PersistentGrant) -> Void) {
        store.heap.modify(record, change)
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

/// Remembered search results by gref, for grefs small enough to index an
/// array (a guest's grant table is indexed by gref, so real ones are small;
/// a larger one is simply searched every time).
struct SearchMemo {
    /// What a remembered search depended on.
    struct State: Equatable {
        var heapGeneration: UInt64
        var treeVersion: UInt64
    }

    private struct Entry {
        var state: State
        var result: KernelAddress?
        /// The found record's fields as they were (and, the heap unchanged, are).
        var live: LiveGrantFields?
    }

    /// Caps the array at 16384 entries (384 KiB) however large the grefs.
    private static var grefLimit: GrantRef { 1 << 14 }

    private var entries: [Entry?] = []

    func result(for gref: GrantRef, in state: State) -> (address: KernelAddress?, live: LiveGrantFields?)? {
        guard Int(gref) < entries.count, let entry = entries[Int(gref)], entry.state == state else { return nil }
        return (entry.result, entry.live)
    }

    mutating func remember(_ result: KernelAddress?, _ live: LiveGrantFields?, for gref: GrantRef, in state: State) {
        guard gref < Self.grefLimit else { return }
        if Int(gref) >= entries.count {
            entries.append(contentsOf: repeatElement(nil, count: Int(gref) - entries.count + 1))
        }
        entries[Int(gref)] = Entry(state: state, result: result, live: live)
    }
}

/// A live persistent grant record's page and handle, read without observing anything.
struct LiveGrantFields {
    var page: PageFrame?
    var handle: GrantHandle
}
