import Blkif
import FakeXen
import RedBlackTree

/// One node of the persistent grant tree as published for observers.
public struct PublishedNode: Hashable, Sendable {
    public let gref: GrantRef
    public let color: RedBlackColor
    public let handle: GrantHandle
    public let page: PageFrame?
    /// Indices into `PublishedTree.nodes` (which is in tree order).
    public internal(set) var left: Int?
    public internal(set) var right: Int?
    /// G2013's flags (`PERSISTENT_GNT_ACTIVE`, `PERSISTENT_GNT_WAS_ACTIVE`),
    /// as `/sys`-style debug state would show them; always false in G2012.
    public var active = false
    public var wasActive = false
}

/// The tree's shape as it stands in memory, read without touching it the
/// way the backend does (no use-after-free is recorded for this look).
public struct PublishedTree: Hashable, Sendable {
    /// Nodes in in-order (left, node, right) walk order.
    public let nodes: [PublishedNode]
    public let root: Int?
    /// Links that lead to freed memory, or that revisit a node.
    public let brokenLinks: [String]
}

public struct InFlightRequest: Hashable, Sendable {
    public let id: UInt64
    public let slot: Int
    public let bitmap: UInt16
}

public struct BackendSnapshot: Hashable, Sendable {
    public let vbd: UInt16
    public let persistentMode: Bool
    public let persistentCount: Int
    public let maxPersistent: Int
    /// Changes whenever the tree or one of its records changes.
    public let treeVersion: UInt64
    public let inFlight: [InFlightRequest]
}

/// The few facts of a connection an observer asks after every event, read
/// without building a `BackendSnapshot` (no in-flight list).
public struct ConnectionSummary: Hashable, Sendable {
    public let persistentMode: Bool
    public let persistentCount: Int
    /// Changes whenever the tree or one of its records changes.
    public let treeVersion: UInt64
}

extension Blkback {
    /// Mode, persistent grant count and tree version of a connected vbd; nil when not connected.
    public func connectionSummary(vbd: UInt16) -> ConnectionSummary? {
        guard let connection = connections[vbd] else { return nil }
        return ConnectionSummary(persistentMode: connection.persistentMode,
                                 persistentCount: connection.persistentCount,
                                 treeVersion: connection.treeVersion)
    }

    public func snapshot(vbd: UInt16) -> BackendSnapshot? {
        guard let connection = connections[vbd] else { return nil }
        // The oracle asks after every event: one read of `slots`, not one per in-flight request.
        let state = connection.currentState
        let slots = state.slots
        return BackendSnapshot(
            vbd: vbd, persistentMode: connection.persistentMode, persistentCount: connection.persistentCount,
            maxPersistent: connection.maxPersistent, treeVersion: connection.treeVersion,
            inFlight: state.inFlight.map { slot in
                InFlightRequest(id: slots[slot].id, slot: slot, bitmap: slots[slot].unmapBitmap)
            })
    }

    /// The tree of a connected vbd as it stands in the heap.
    public func publishedTree(vbd: UInt16) -> PublishedTree? {
        guard let connection = connections[vbd] else { return nil }
        if let sound = publishedSoundTree(connection) { return sound }
        return publishedTreeAsFound(connection)
    }

    /// The one-walk publication alone (nil when the tree is not sound), for
    /// the test that holds it to the careful walk.
    @_spi(Testing) public func publishedTreeByOneWalk(vbd: UInt16) -> PublishedTree? {
        connections[vbd].flatMap { publishedSoundTree($0) }
    }

    /// The careful walk alone, whatever state the tree is in.
    @_spi(Testing) public func publishedTreeByCarefulWalk(vbd: UInt16) -> PublishedTree? {
        connections[vbd].flatMap { publishedTreeAsFound($0) }
    }

    /// Frees the record at the root of `vbd`'s tree behind the tree's back, as
    /// a use-after-free bug would, leaving the tree linked to freed memory: the
    /// corrupted state the careful walk exists for. Tests only.
    @_spi(Testing) public func freeTreeRootBehindTheTreesBack(vbd: UInt16) {
        guard let root = connections[vbd]?.treeRoot else { return }
        heap.free(root)
    }

    /// The tree published by one in-order walk, or nil as soon as it is not a
    /// sound search tree: a link to freed memory, more nodes than the heap
    /// holds live records (a cycle), or grefs not strictly rising in walk order
    /// (which is also how a record reached twice shows: its gref comes again).
    /// For a sound tree, the careful walk would publish exactly this; for any
    /// other, the caller runs it. Each node's indices come from the walk itself
    /// (a child is emitted before or after its parent), so nothing maps
    /// addresses to positions; the spine stack is kept between calls.
    private func publishedSoundTree(_ connection: Connection) -> PublishedTree? {
        guard let rootAddress = connection.treeRoot else {
            return PublishedTree(nodes: [], root: nil, brokenLinks: [])
        }
        var spine = publishingSpine
        publishingSpine = []
        defer {
            spine.removeAll(keepingCapacity: true)
            publishingSpine = spine
        }
        // Distinct live records reachable are at most the heap's live count.
        var budget = heap.liveCount
        var nodes: [PublishedNode] = []
        nodes.reserveCapacity(max(connection.persistentCount, 0))
        var root: Int?
        var lastGref: GrantRef?

        /// Stacks `address` and its chain of left children, each hung where the one before says.
        func pushLeftSpine(from address: KernelAddress, hungAt place: PublishingSpineEntry.Place) -> Bool {
            var next: KernelAddress? = address
            var place = place
            while let current = next {
                guard budget > 0, let record = heap.peek(current) else { return false }
                budget -= 1
                spine.append(PublishingSpineEntry(record: record, place: place, leftIndex: nil))
                place = .leftOf(spinePosition: spine.count - 1)
                next = record.links.left
            }
            return true
        }

        guard pushLeftSpine(from: rootAddress, hungAt: .root) else { return nil }
        while let entry = spine.popLast() {
            let record = entry.record
            if let lastGref, record.gref <= lastGref { return nil }
            lastGref = record.gref
            let index = nodes.count
            nodes.append(PublishedNode(gref: record.gref, color: record.links.color, handle: record.handle,
                                       page: record.page, left: entry.leftIndex, right: nil,
                                       active: record.active, wasActive: record.wasActive))
            switch entry.place {
            case .root: root = index
            // The parent is still stacked: it is emitted after its whole left subtree.
            case .leftOf(let position): spine[position].leftIndex = index
            // The parent was emitted just before this right subtree began.
            case .rightOf(let parent): nodes[parent].right = index
            }
            if let right = record.links.right {
                guard pushLeftSpine(from: right, hungAt: .rightOf(nodeIndex: index)) else { return nil }
            }
        }
        return PublishedTree(nodes: nodes, root: root, brokenLinks: [])
    }

    /// The tree as found, whatever state it is in: broken links and records
    /// reached twice are named, and links are turned into indices through a
    /// map of every record reached.
    private func publishedTreeAsFound(_ connection: Connection) -> PublishedTree? {
        var broken: [String] = []
        // Depth-first, in order, with an explicit stack so a corrupted tree can't overflow ours.
        // A frame carries the record it read, so each record is peeked once.
        struct Frame { let address: KernelAddress; var record: PersistentGrant?; var expanded: Bool }
        var order: [PersistentGrant] = []
        // Every record reached, with its place in `order` once it has one (-1 until then): it
        // tells a second arrival (a cycle or a shared subtree) and turns links into indices.
        var position: [KernelAddress: Int] = [:]
        let expected = max(connection.persistentCount, 0)
        position.reserveCapacity(expected)
        order.reserveCapacity(expected)
        var stack: [Frame] = []
        if let root = connection.treeRoot { stack.append(Frame(address: root, record: nil, expanded: false)) }
        while var frame = stack.popLast() {
            if frame.expanded, let record = frame.record {
                position[frame.address] = order.count
                order.append(record)
                continue
            }
            guard let record = heap.peek(frame.address) else {
                broken.append("link to freed record at \(frame.address)")
                continue
            }
            guard position.updateValue(-1, forKey: frame.address) == nil else {
                broken.append("record at \(frame.address) (gref \(record.gref)) is reached twice")
                continue
            }
            frame.record = record
            frame.expanded = true
            if let right = record.links.right { stack.append(Frame(address: right, record: nil, expanded: false)) }
            stack.append(frame)
            if let left = record.links.left { stack.append(Frame(address: left, record: nil, expanded: false)) }
        }
        let nodes = order.map { record in
            PublishedNode(gref: record.gref, color: record.links.color, handle: record.handle, page: record.page,
                          left: record.links.left.flatMap { position[$0] },
                          right: record.links.right.flatMap { position[$0] },
                          active: record.active, wasActive: record.wasActive)
        }
        return PublishedTree(nodes: nodes, root: connection.treeRoot.flatMap { position[$0] },
                             brokenLinks: broken)
    }
}

/// A record on the sound-tree walk's stack, waiting for its left subtree to be emitted.
struct PublishingSpineEntry {
    enum Place {
        case root
        /// The left child of the entry at this position of the stack.
        case leftOf(spinePosition: Int)
        /// The right child of the node already published at this index.
        case rightOf(nodeIndex: Int)
    }

    let record: PersistentGrant
    let place: Place
    /// Where its left child was published, once it has been.
    var leftIndex: Int?
}
