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
    public let left: Int?
    public let right: Int?
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
                                 persistentCount: connection.persistentGrants.count,
                                 treeVersion: connection.persistentGrants.version)
    }

    public func snapshot(vbd: UInt16) -> BackendSnapshot? {
        guard let connection = connections[vbd] else { return nil }
        // The oracle asks after every event: one read of `slots`, not one per in-flight request.
        let slots = connection.slots
        return BackendSnapshot(
            vbd: vbd, persistentMode: connection.persistentMode, persistentCount: connection.persistentGrants.count,
            maxPersistent: connection.maxPersistent, treeVersion: connection.persistentGrants.version,
            inFlight: connection.inFlight.map { slot in
                InFlightRequest(id: slots[slot].id, slot: slot, bitmap: slots[slot].unmapBitmap)
            })
    }

    /// The tree of a connected vbd as it stands in the heap.
    public func publishedTree(vbd: UInt16) -> PublishedTree? {
        guard let connection = connections[vbd] else { return nil }
        var broken: [String] = []
        // Depth-first, in order, with an explicit stack so a corrupted tree can't overflow ours.
        // A frame carries the record it read, so each record is peeked once.
        struct Frame { let address: KernelAddress; var record: PersistentGrant?; var expanded: Bool }
        var order: [PersistentGrant] = []
        // Every record reached, with its place in `order` once it has one (-1 until then): it
        // tells a second arrival (a cycle or a shared subtree) and turns links into indices.
        var position: [KernelAddress: Int] = [:]
        let expected = max(connection.persistentGrants.count, 0)
        position.reserveCapacity(expected)
        order.reserveCapacity(expected)
        var stack: [Frame] = []
        if let root = connection.persistentGrants.root { stack.append(Frame(address: root, record: nil, expanded: false)) }
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
                          right: record.links.right.flatMap { position[$0] })
        }
        return PublishedTree(nodes: nodes, root: connection.persistentGrants.root.flatMap { position[$0] },
                             brokenLinks: broken)
    }
}
