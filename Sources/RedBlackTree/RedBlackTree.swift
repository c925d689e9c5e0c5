// An intrusive red-black tree, written from the textbook algorithm (CLRS-style insert and
// delete fix-ups, adapted to have no sentinel leaf: the parent of a missing child is carried
// alongside it). It mirrors the shape of a kernel `struct rb_root` / `struct rb_node`:
//
// - The tree value holds only the root address, like `struct rb_root` embedded in a
//   connection struct.
// - Every node access (key, parent, children, colour) goes through a `RedBlackNodeStore`,
//   exactly as C code reads `node->rb_left` through memory. The store may be a fake kernel heap
//   that detects use-after-free; the tree never caches node contents between operations.
//
// Robustness: the model may run these algorithms over corrupted memory (a freed node read back
// with stale or missing links). Nothing here traps: there are no force unwraps, no indexing,
// and every loop is bounded (`walkLimit` for a single descent/climb, a traversal limit for
// whole-tree walks). When a link the algorithm needs is missing, the step stops quietly; the
// heap has already recorded the real defect.

/// The colour of a red-black node.
public enum RedBlackColor: Sendable, Hashable {
    case red
    case black
}

/// The links embedded in each node, like the kernel's `struct rb_node`.
public struct RedBlackLinks<Address: Hashable & Sendable>: Hashable, Sendable {
    public var parent: Address?
    public var left: Address?
    public var right: Address?
    public var color: RedBlackColor

    @inlinable
    public init(parent: Address?, left: Address?, right: Address?, color: RedBlackColor) {
        self.parent = parent
        self.left = left
        self.right = right
        self.color = color
    }

    /// Links of a node that belongs to no tree: no parent, no children, red.
    @inlinable
    public static var detached: Self {
        Self(parent: nil, left: nil, right: nil, color: .red)
    }

    /// The child on one side (`true` = left).
    @inlinable
    func child(onLeft: Bool) -> Address? {
        onLeft ? left : right
    }

    @inlinable
    mutating func setChild(onLeft: Bool, _ child: Address?) {
        if onLeft { left = child } else { right = child }
    }
}

/// Memory that holds the tree's nodes. Every read and write the tree performs goes through here.
public protocol RedBlackNodeStore {
    associatedtype Address: Hashable & Sendable
    associatedtype Key: Comparable

    /// Reads may observe freed memory (the heap records that); they must still return *something*.
    mutating func key(of node: Address) -> Key
    mutating func links(of node: Address) -> RedBlackLinks<Address>
    mutating func setLinks(_ links: RedBlackLinks<Address>, of node: Address)

    /// A node's key and links together, read without any observable effect, when the store
    /// can tell that separate `key(of:)` and `links(of:)` reads would observe nothing either
    /// (a live node); nil otherwise, and the descents fall back to the separate reads. A
    /// descent visits a node for its key and then one link: one lookup instead of two.
    mutating func peekNode(_ node: Address) -> (key: Key, links: RedBlackLinks<Address>)?
}

extension RedBlackNodeStore {
    /// Stores without a cheaper combined read always take the separate reads.
    @inlinable
    public mutating func peekNode(_ node: Address) -> (key: Key, links: RedBlackLinks<Address>)? { nil }
}

/// The outcome of `RedBlackTree.insert`.
public enum RedBlackInsertion<Address> {
    /// The node was linked into the tree.
    case inserted
    /// A node with an equal key is already in the tree; the new node was not linked and its
    /// links were not written.
    case duplicate(existing: Address)
}

extension RedBlackInsertion: Sendable where Address: Sendable {}
extension RedBlackInsertion: Equatable where Address: Equatable {}
extension RedBlackInsertion: Hashable where Address: Hashable {}

/// An intrusive red-black tree. The value holds only the root; the nodes live in a store.
public struct RedBlackTree<Address: Hashable & Sendable>: Sendable {
    @usableFromInline
    internal var _root: Address?

    /// The most steps a single descent or climb (search, insert's descent, first/last/next/previous,
    /// a fix-up's climb) takes before giving up. A valid red-black tree of n nodes is at most
    /// 2·log2(n+1) high, so this only ever matters on corrupted (e.g. cyclic) links.
    public var walkLimit: Int

    /// Default for `walkLimit`: far above the height of any valid tree, small enough that a
    /// cycle in corrupted memory costs little.
    @inlinable
    public static var defaultWalkLimit: Int { 4096 }

    /// Default bound on the number of nodes a whole-tree walk (`inOrder`, `validate`) visits.
    @inlinable
    public static var defaultTraversalLimit: Int { 1 << 20 }

    /// The root node, like `rb_root.rb_node`.
    @inlinable
    public var root: Address? { _root }

    @inlinable
    public init() {
        _root = nil
        walkLimit = Self.defaultWalkLimit
    }

    @inlinable
    public init(walkLimit: Int) {
        _root = nil
        self.walkLimit = walkLimit
    }

    /// Like `RB_EMPTY_ROOT`.
    @inlinable
    public var isEmpty: Bool { _root == nil }

    // MARK: - Lookup

    /// The node whose key equals `key`, or nil. Compares like the seed's `get_persistent_gnt`:
    /// `key < node` goes left, `node < key` goes right, otherwise found.
    @inlinable
    public func search<S: RedBlackNodeStore>(_ key: S.Key, in store: inout S) -> Address?
    where S.Address == Address {
        var current = _root
        var steps = 0
        while let node = current {
            if steps >= walkLimit { return nil }
            steps += 1
            if let (nodeKey, links) = store.peekNode(node) {
                if key < nodeKey {
                    current = links.left
                } else if nodeKey < key {
                    current = links.right
                } else {
                    return node
                }
                continue
            }
            let nodeKey = store.key(of: node)
            if key < nodeKey {
                current = store.links(of: node).left
            } else if nodeKey < key {
                current = store.links(of: node).right
            } else {
                return node
            }
        }
        return nil
    }

    // MARK: - Insertion

    /// Links a detached node at its place and rebalances. A duplicate key is not linked (and the
    /// node's links are not written). The node's previous links are ignored and overwritten,
    /// like `rb_link_node`.
    ///
    /// On corrupted links that make the descent exceed `walkLimit`, the node is not linked and
    /// the last node visited is reported as `.duplicate(existing:)`.
    @inlinable
    public mutating func insert<S: RedBlackNodeStore>(
        _ node: Address, in store: inout S
    ) -> RedBlackInsertion<Address> where S.Address == Address {
        let key = store.key(of: node)
        var parent: Address? = nil
        var goesLeft = false
        var current = _root
        var steps = 0
        while let candidate = current {
            if steps >= walkLimit { return .duplicate(existing: candidate) }
            steps += 1
            let peeked = store.peekNode(candidate)
            let candidateKey = peeked?.key ?? store.key(of: candidate)
            if key < candidateKey {
                goesLeft = true
            } else if candidateKey < key {
                goesLeft = false
            } else {
                return .duplicate(existing: candidate)
            }
            parent = candidate
            current = (peeked?.links ?? store.links(of: candidate)).child(onLeft: goesLeft)
        }

        guard let parent else {
            // Empty tree: the node becomes the (black) root.
            store.setLinks(RedBlackLinks(parent: nil, left: nil, right: nil, color: .black), of: node)
            _root = node
            return .inserted
        }
        var parentLinks = store.links(of: parent)
        parentLinks.setChild(onLeft: goesLeft, node)
        store.setLinks(parentLinks, of: parent)
        store.setLinks(RedBlackLinks(parent: parent, left: nil, right: nil, color: .red), of: node)
        if parentLinks.color == .red {
            rebalanceAfterInsert(node, in: &store)
        }
        return .inserted
    }

    /// Restores the red-black properties after linking the red node `start` under a red parent.
    @inlinable
    mutating func rebalanceAfterInsert<S: RedBlackNodeStore>(_ start: Address, in store: inout S)
    where S.Address == Address {
        var node = start  // a red node that may have a red parent
        var steps = 0
        while steps < walkLimit {
            steps += 1
            let nodeLinks = store.links(of: node)
            guard let parent = nodeLinks.parent else {
                // `node` is the root: a red root simply turns black.
                if nodeLinks.color == .red {
                    var blackened = nodeLinks
                    blackened.color = .black
                    store.setLinks(blackened, of: node)
                }
                return
            }
            var parentLinks = store.links(of: parent)
            if parentLinks.color == .black { return }
            guard let grand = parentLinks.parent else {
                // A red root (only on corrupted memory): blackening it is always allowed.
                parentLinks.color = .black
                store.setLinks(parentLinks, of: parent)
                return
            }
            var grandLinks = store.links(of: grand)
            let parentOnLeft = grandLinks.left == parent

            // Red uncle: push the redness up two levels and continue from the grandparent.
            if let uncle = grandLinks.child(onLeft: !parentOnLeft) {
                var uncleLinks = store.links(of: uncle)
                if uncleLinks.color == .red {
                    uncleLinks.color = .black
                    store.setLinks(uncleLinks, of: uncle)
                    parentLinks.color = .black
                    store.setLinks(parentLinks, of: parent)
                    if grandLinks.parent == nil {
                        // The grandparent is the root and stays black; done.
                        return
                    }
                    grandLinks.color = .red
                    store.setLinks(grandLinks, of: grand)
                    node = grand
                    continue
                }
            }

            // Black (or missing) uncle: one or two rotations finish the job.
            let nodeOnLeft = parentLinks.left == node
            if nodeOnLeft != parentOnLeft {
                // Inner grandchild: rotate it up over its parent so it becomes the outer one
                // (and the old parent becomes its red child).
                rotate(parent, downOnLeft: parentOnLeft, newColor: nil, newRisenColor: nil, in: &store)
            }
            // Rotate the grandparent's child on that side (the parent, or the node that just rose
            // over it) up over the grandparent: it takes the black, the grandparent the red.
            rotate(grand, downOnLeft: !parentOnLeft, newColor: .red, newRisenColor: .black, in: &store)
            return
        }
    }

    // MARK: - Erase

    /// Unlinks `node` and rebalances. Like the kernel's `rb_erase`, it does NOT touch the erased
    /// node's own links: a caller that keeps using the erased node sees its stale
    /// parent/left/right/colour. (A node with two children is replaced by its in-order successor,
    /// which is relinked into its place; keys never move between nodes.)
    ///
    /// Like the kernel, it trusts the node's links: erasing a node that is not in the tree
    /// rewrites whatever its stale links point to (a nil parent means "I am the root").
    @inlinable
    public mutating func erase<S: RedBlackNodeStore>(_ node: Address, in store: inout S)
    where S.Address == Address {
        let nodeLinks = store.links(of: node)
        // `child` moves into the position vacated by the node that actually leaves its place;
        // `childParent` is its parent afterwards (needed when `child` is nil).
        let child: Address?
        let childParent: Address?
        let removedColor: RedBlackColor

        if let left = nodeLinks.left, let right = nodeLinks.right {
            // Two children: the successor (leftmost of the right subtree) takes the node's place.
            var successor = right
            var successorLinks = store.links(of: right)
            var steps = 0
            while let next = successorLinks.left {
                if steps >= walkLimit { return }  // cycle in corrupted memory: give up untouched
                steps += 1
                successor = next
                successorLinks = store.links(of: next)
            }
            removedColor = successorLinks.color
            child = successorLinks.right
            if successor == right {
                // The successor is the right child: it keeps its own right subtree.
                childParent = successor
            } else {
                // Detach the successor: its parent adopts its right subtree on the left.
                let successorParent = successorLinks.parent
                childParent = successorParent
                if let successorParent {
                    var links = store.links(of: successorParent)
                    links.left = child
                    store.setLinks(links, of: successorParent)
                }
                if let child {
                    var links = store.links(of: child)
                    links.parent = successorParent
                    store.setLinks(links, of: child)
                }
                // The successor takes over the erased node's right subtree.
                successorLinks.right = right
                var rightLinks = store.links(of: right)
                rightLinks.parent = successor
                store.setLinks(rightLinks, of: right)
            }
            // The successor takes over the erased node's parent, left subtree and colour.
            replaceChild(of: nodeLinks.parent, old: node, new: successor, in: &store)
            var leftLinks = store.links(of: left)
            leftLinks.parent = successor
            store.setLinks(leftLinks, of: left)
            successorLinks.parent = nodeLinks.parent
            successorLinks.left = left
            successorLinks.color = nodeLinks.color
            store.setLinks(successorLinks, of: successor)
        } else {
            // At most one child: it moves up into the node's place.
            child = nodeLinks.left ?? nodeLinks.right
            childParent = nodeLinks.parent
            removedColor = nodeLinks.color
            replaceChild(of: nodeLinks.parent, old: node, new: child, in: &store)
            if let child {
                var links = store.links(of: child)
                links.parent = nodeLinks.parent
                if removedColor == .black && links.color == .red {
                    // The usual case (black node, red only child): the child takes the black.
                    links.color = .black
                    store.setLinks(links, of: child)
                    return
                }
                store.setLinks(links, of: child)
            }
        }

        if removedColor == .black {
            rebalanceAfterErase(child: child, parent: childParent, in: &store)
        }
    }

    /// Restores equal black heights after a black node left the position now held by `child`
    /// (possibly nil) under `parent`: the subtree at that position is one black short.
    @inlinable
    mutating func rebalanceAfterErase<S: RedBlackNodeStore>(
        child start: Address?, parent startParent: Address?, in store: inout S
    ) where S.Address == Address {
        var short = start          // root of the subtree that is one black short
        var parent = startParent   // its parent
        var steps = 0
        while steps < walkLimit {
            steps += 1
            if let node = short {
                var links = store.links(of: node)
                if links.color == .red {
                    // A red node absorbs the missing black.
                    links.color = .black
                    store.setLinks(links, of: node)
                    return
                }
            }
            // Reaching the root with the deficit is fine: every path lost one black.
            guard let p = parent else { return }
            var parentLinks = store.links(of: p)
            let shortOnLeft = parentLinks.left == short
            guard var sibling = parentLinks.child(onLeft: !shortOnLeft) else { return }
            var siblingLinks = store.links(of: sibling)

            if siblingLinks.color == .red {
                // Red sibling: rotate it above the parent (sibling black, parent red) so that the
                // short side gets a black sibling, then carry on with that one.
                rotate(p, downOnLeft: shortOnLeft, newColor: .red, newRisenColor: .black, in: &store)
                parentLinks = store.links(of: p)
                guard let newSibling = parentLinks.child(onLeft: !shortOnLeft) else { return }
                sibling = newSibling
                siblingLinks = store.links(of: sibling)
            }

            let near = siblingLinks.child(onLeft: shortOnLeft)
            let far = siblingLinks.child(onLeft: !shortOnLeft)
            let farLinks = far.map { store.links(of: $0) }
            let farRed = farLinks?.color == .red
            let nearRed = !farRed && near.map { store.links(of: $0).color == .red } == true

            if !farRed && !nearRed {
                // Black sibling with black children: paint it red, which shortens the sibling
                // side too; the deficit moves up to the parent.
                siblingLinks.color = .red
                store.setLinks(siblingLinks, of: sibling)
                short = p
                parent = parentLinks.parent
                continue
            }

            if farRed, let far, var links = farLinks {
                // The far nephew will sit under the risen sibling on the far side: blacken it.
                links.color = .black
                store.setLinks(links, of: far)
            } else if near != nil {
                // Only the near nephew is red: rotate it up over the sibling so it becomes the
                // sibling. The old sibling (black) becomes its far child, so nothing needs
                // repainting here; the final rotation gives `near` the parent's colour.
                rotate(sibling, downOnLeft: !shortOnLeft, newColor: nil, newRisenColor: nil, in: &store)
            }
            // Rotate the sibling up over the parent: it takes the parent's colour, the parent goes
            // black on the short side, which supplies the missing black.
            rotate(p, downOnLeft: shortOnLeft, newColor: .black, newRisenColor: parentLinks.color,
                   in: &store)
            return
        }
    }

    // MARK: - Structural helpers

    /// Makes `parent` point at `new` where it pointed at `old`; a nil parent means the root.
    /// Like the kernel's child-changing helper, a parent that points at `old` on neither side
    /// gets its right link overwritten.
    @inlinable
    mutating func replaceChild<S: RedBlackNodeStore>(
        of parent: Address?, old: Address, new: Address?, in store: inout S
    ) where S.Address == Address {
        guard let parent else {
            _root = new
            return
        }
        var links = store.links(of: parent)
        if links.left == old {
            links.left = new
        } else {
            links.right = new
        }
        store.setLinks(links, of: parent)
    }

    /// Rotates `node` down to the `downOnLeft` side; its child on the other side rises into its
    /// place. (`downOnLeft: true` is the classic left rotation.) Optionally repaints the node
    /// going down (`newColor`) and the one rising (`newRisenColor`) in the same writes.
    /// Does nothing if the rising child is missing.
    @inlinable
    mutating func rotate<S: RedBlackNodeStore>(
        _ node: Address, downOnLeft: Bool,
        newColor: RedBlackColor?, newRisenColor: RedBlackColor?,
        in store: inout S
    ) where S.Address == Address {
        var nodeLinks = store.links(of: node)
        guard let risen = nodeLinks.child(onLeft: !downOnLeft) else { return }
        var risenLinks = store.links(of: risen)
        // The rising node's inner subtree crosses over to the node going down.
        let inner = risenLinks.child(onLeft: downOnLeft)
        nodeLinks.setChild(onLeft: !downOnLeft, inner)
        if let inner {
            var links = store.links(of: inner)
            links.parent = node
            store.setLinks(links, of: inner)
        }
        let above = nodeLinks.parent
        replaceChild(of: above, old: node, new: risen, in: &store)
        risenLinks.parent = above
        risenLinks.setChild(onLeft: downOnLeft, node)
        nodeLinks.parent = risen
        if let newColor { nodeLinks.color = newColor }
        if let newRisenColor { risenLinks.color = newRisenColor }
        store.setLinks(nodeLinks, of: node)
        store.setLinks(risenLinks, of: risen)
    }

    // MARK: - Ordered walks

    /// The leftmost node (`rb_first`), or nil.
    @inlinable
    public func first<S: RedBlackNodeStore>(in store: inout S) -> Address?
    where S.Address == Address {
        guard let root = _root else { return nil }
        return extreme(from: root, leftmost: true, in: &store)
    }

    /// The rightmost node (`rb_last`), or nil.
    @inlinable
    public func last<S: RedBlackNodeStore>(in store: inout S) -> Address?
    where S.Address == Address {
        guard let root = _root else { return nil }
        return extreme(from: root, leftmost: false, in: &store)
    }

    /// In-order successor computed only from the node's own links (`rb_next`): the leftmost node
    /// of its right subtree, else the first ancestor reached by climbing while we are a right
    /// child. Works (returns whatever the links say) even for an erased node.
    /// Returns nil when a walk exceeds `walkLimit`.
    @inlinable
    public func next<S: RedBlackNodeStore>(_ node: Address, in store: inout S) -> Address?
    where S.Address == Address {
        neighbour(of: node, forward: true, in: &store)
    }

    /// In-order predecessor (`rb_prev`), the mirror image of `next`.
    @inlinable
    public func previous<S: RedBlackNodeStore>(_ node: Address, in store: inout S) -> Address?
    where S.Address == Address {
        neighbour(of: node, forward: false, in: &store)
    }

    /// Descends from `start` always to the same side; nil if the walk exceeds `walkLimit`.
    @inlinable
    func extreme<S: RedBlackNodeStore>(from start: Address, leftmost: Bool, in store: inout S)
    -> Address? where S.Address == Address {
        var node = start
        var steps = 0
        while let child = store.links(of: node).child(onLeft: leftmost) {
            if steps >= walkLimit { return nil }
            steps += 1
            node = child
        }
        return node
    }

    @inlinable
    func neighbour<S: RedBlackNodeStore>(of node: Address, forward: Bool, in store: inout S)
    -> Address? where S.Address == Address {
        let links = store.links(of: node)
        if let down = links.child(onLeft: !forward) {
            return extreme(from: down, leftmost: forward, in: &store)
        }
        // Climb while we are the child on the far side of our parent.
        var current = node
        var parent = links.parent
        var steps = 0
        while let p = parent {
            if steps >= walkLimit { return nil }
            steps += 1
            let parentLinks = store.links(of: p)
            if parentLinks.child(onLeft: !forward) != current { return p }
            current = p
            parent = parentLinks.parent
        }
        return nil
    }

    /// All nodes in order, by `first` then repeated `next`. Bounded: stops at `limit` nodes, at
    /// the first node seen twice (a cycle in corrupted links), or when a step gives up.
    public func inOrder<S: RedBlackNodeStore>(
        in store: inout S, limit: Int = RedBlackTree.defaultTraversalLimit
    ) -> [Address] where S.Address == Address {
        var result: [Address] = []
        var seen = Set<Address>()
        var current = first(in: &store)
        while let node = current, result.count < limit {
            guard seen.insert(node).inserted else { break }
            result.append(node)
            current = next(node, in: &store)
        }
        return result
    }
}
