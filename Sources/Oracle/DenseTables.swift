import Blkif
import FakeXen

/// The reference's tree of one connection: gref → the handle its map
/// returned. Asked on every segment, so grefs below `denseLimit` (in practice
/// all of them: a frontend grants from a small pool) are looked up by index
/// in an array instead of hashed; any other gref, which a `UInt32` may still
/// be, goes to a dictionary. Iteration order is not part of the contract:
/// every reader builds a set or sorts.
struct GrefHandleMap {
    /// Grefs below this are kept by index. The array grows only as far as the
    /// largest such gref seen, so a connection that grants few pages stays small.
    static let denseLimit: GrantRef = 1 << 16

    /// `handles[gref]` is the handle of `gref` where `present[gref]`.
    private var handles: [GrantHandle] = []
    private var present: [Bool] = []
    private var sparse: [GrantRef: GrantHandle] = [:]
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    subscript(gref: GrantRef) -> GrantHandle? {
        if gref < Self.denseLimit {
            let index = Int(gref)
            return index < present.count && present[index] ? handles[index] : nil
        }
        return sparse[gref]
    }

    /// Puts `gref` in the map as `handle` (replacing any handle it had).
    mutating func set(_ handle: GrantHandle, for gref: GrantRef) {
        guard gref < Self.denseLimit else {
            if sparse.updateValue(handle, forKey: gref) == nil { count += 1 }
            return
        }
        let index = Int(gref)
        if index >= present.count {
            let size = max(index + 1, present.count * 2, 64)
            present.append(contentsOf: repeatElement(false, count: size - present.count))
            handles.append(contentsOf: repeatElement(0, count: size - handles.count))
        }
        if !present[index] { count += 1 }
        present[index] = true
        handles[index] = handle
    }

    /// Takes `gref` out of the map; returns the handle it had.
    @discardableResult
    mutating func remove(_ gref: GrantRef) -> GrantHandle? {
        guard gref < Self.denseLimit else {
            guard let handle = sparse.removeValue(forKey: gref) else { return nil }
            count -= 1
            return handle
        }
        let index = Int(gref)
        guard index < present.count, present[index] else { return nil }
        present[index] = false
        count -= 1
        return handles[index]
    }

    /// The grefs in ascending order (the order a G2013 purge and teardown walk the tree in).
    var ascendingGrefs: [GrantRef] {
        var grefs: [GrantRef] = []
        grefs.reserveCapacity(count)
        for index in present.indices where present[index] { grefs.append(GrantRef(index)) }
        grefs.append(contentsOf: sparse.keys.sorted())
        return grefs
    }

    /// Every gref in the map with its handle, in no particular order.
    func forEach(_ body: (_ gref: GrantRef, _ handle: GrantHandle) -> Void) {
        if count == 0 { return }
        for index in present.indices where present[index] { body(GrantRef(index), handles[index]) }
        for (gref, handle) in sparse { body(gref, handle) }
    }

    var grefs: [GrantRef] {
        var grefs: [GrantRef] = []
        grefs.reserveCapacity(count)
        forEach { gref, _ in grefs.append(gref) }
        return grefs
    }

    /// The map as a dictionary (for tests and reports; nothing hot).
    var dictionary: [GrantRef: GrantHandle] {
        var dictionary: [GrantRef: GrantHandle] = [:]
        forEach { gref, handle in dictionary[gref] = handle }
        return dictionary
    }

    var values: [GrantHandle] {
        var values: [GrantHandle] = []
        values.reserveCapacity(count)
        forEach { _, handle in values.append(handle) }
        return values
    }
}

/// Guest page → how many held segments take their tokens from it. Asked for
/// every page an event changes and counted up and down for every held write,
/// so page numbers below `denseLimit` (the fake memory numbers its pages
/// from zero, densely) are counted by index; any other goes to a dictionary.
struct GuestPageCounts {
    static let denseLimit: UInt64 = 1 << 20

    private var dense: [Int32] = []
    private var sparse: [GuestPage: Int] = [:]
    /// How many pages have a count above zero.
    private(set) var pagesCounted = 0

    var isEmpty: Bool { pagesCounted == 0 }

    func contains(_ page: GuestPage) -> Bool {
        if page.number < Self.denseLimit {
            let index = Int(page.number)
            return index < dense.count && dense[index] > 0
        }
        return sparse[page] != nil
    }

    /// One count in for the page of each segment that has one: a held
    /// write's pages, counted in one access to the dense counts rather
    /// than a call (and a uniqueness check of the list) per segment.
    mutating func increment(pagesOf segments: [SegmentIO]) { adjust(pagesOf: segments, by: 1) }

    /// One count out for the page of each segment that has one; each must
    /// have been counted in (see `increment(pagesOf:)`).
    mutating func decrement(pagesOf segments: [SegmentIO]) { adjust(pagesOf: segments, by: -1) }

    /// `step` (1 or -1) added to the count of each segment's page.
    private mutating func adjust(pagesOf segments: [SegmentIO], by step: Int32) {
        if step > 0 {
            var largest = -1
            for segment in segments {
                if let page = segment.page, page.number < Self.denseLimit { largest = max(largest, Int(page.number)) }
            }
            if largest >= dense.count { growDense(toHold: largest) }
        }
        // Pages whose count leaves zero (counting in) or reaches it (counting out).
        var crossed = 0
        var sparsePages = false
        dense.withUnsafeMutableBufferPointer { counts in
            for segment in segments {
                guard let page = segment.page else { continue }
                guard page.number < Self.denseLimit else {
                    sparsePages = true
                    continue
                }
                // Counting in, the list was grown above to hold the largest such page.
                let index = Int(page.number)
                precondition(step > 0 || (index < counts.count && counts[index] > 0),
                             "a held page counted out that was never counted in")
                let before = counts[index]
                counts[index] += step
                if before == 0 || counts[index] == 0 { crossed += 1 }
            }
        }
        pagesCounted += step > 0 ? crossed : -crossed
        guard sparsePages else { return }
        for segment in segments {
            guard let page = segment.page, page.number >= Self.denseLimit else { continue }
            if step > 0 { increment(page) } else { decrement(page) }
        }
    }

    /// The dense counts made long enough to index `index` (doubling, as appending would).
    private mutating func growDense(toHold index: Int) {
        let size = max(index + 1, dense.count * 2, 64)
        dense.append(contentsOf: repeatElement(0, count: size - dense.count))
    }

    mutating func increment(_ page: GuestPage) {
        guard page.number < Self.denseLimit else {
            sparse[page, default: 0] += 1
            if sparse[page] == 1 { pagesCounted += 1 }
            return
        }
        let index = Int(page.number)
        if index >= dense.count { growDense(toHold: index) }
        dense[index] += 1
        if dense[index] == 1 { pagesCounted += 1 }
    }

    /// One count of `page` goes; it must have been counted in.
    mutating func decrement(_ page: GuestPage) {
        guard page.number < Self.denseLimit else {
            let slot = sparse.index(forKey: page)!
            if sparse.values[slot] == 1 {
                sparse.remove(at: slot)
                pagesCounted -= 1
            } else {
                sparse.values[slot] -= 1
            }
            return
        }
        let index = Int(page.number)
        precondition(index < dense.count && dense[index] > 0, "a held page counted out that was never counted in")
        dense[index] -= 1
        if dense[index] == 0 { pagesCounted -= 1 }
    }
}
