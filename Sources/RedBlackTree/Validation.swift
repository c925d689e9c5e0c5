// Structural checks for `RedBlackTree`, safe to run over corrupted links.
//
// Testing SPI (`@_spi(Testing) import RedBlackTree`), like swift-collections' invariant checks:
// the tree's own tests and tests that check a tree shape published by its user need them;
// production code does not. (The oracle judges the backend's published tree with rules of its
// own, deliberately independent of this code.)

/// One broken red-black or search-tree property found by `RedBlackTree.validate`.
@_spi(Testing)
public struct RedBlackViolation: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable, CaseIterable {
        /// The root is red.
        case rootNotBlack
        /// A red node has a red child.
        case redRedEdge
        /// Two root-to-nil paths pass through different numbers of black nodes.
        case blackHeightMismatch
        /// A child's parent link does not point back at its parent, or the root has a parent.
        case parentLinkBroken
        /// In-order keys are not strictly increasing.
        case orderBroken
        /// A node is reachable twice (a cycle or a shared subtree), or the walk hit its limit.
        case cycle
    }

    public var kind: Kind
    public var message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(message)" }
}

extension RedBlackTree {
    /// A tree rooted at `root` over nodes already linked in some store: lets `validate` check a
    /// shape that was built elsewhere, such as a copy of a tree its user published.
    @_spi(Testing)
    public init(root: Address?) {
        _root = root
        walkLimit = Self.defaultWalkLimit
    }

    /// Checks: root black, root parent nil, parent pointers consistent, no red node with a red
    /// child, equal black heights, keys strictly increasing in order. Never loops forever on
    /// corrupted links: every node is entered at most once (a node reached again is reported as
    /// `.cycle` and not descended into), and at most `limit` nodes are visited.
    /// An empty result means the tree is a valid red-black search tree.
    @_spi(Testing)
    public func validate<S: RedBlackNodeStore>(
        in store: inout S, limit: Int = RedBlackTree.defaultTraversalLimit
    ) -> [RedBlackViolation] where S.Address == Address {
        guard let root = _root else { return [] }
        var report = ValidationReport<Address>()
        let rootLinks = store.links(of: root)
        if rootLinks.color != .black {
            report.add(.rootNotBlack, "root \(root) is red")
        }
        if let parent = rootLinks.parent {
            report.add(.parentLinkBroken, "root \(root) has parent \(parent)")
        }
        report.seen.insert(root)

        // Iterative in-order walk. Each stack entry is a node whose left subtree is being (or has
        // been) walked, with its links as read on entry and the number of black nodes from the
        // root down to it inclusive.
        var stack: [(node: Address, links: RedBlackLinks<Address>, blackDepth: Int)] = []
        var current: (node: Address, links: RedBlackLinks<Address>, blackDepth: Int)? =
            (root, rootLinks, rootLinks.color == .black ? 1 : 0)
        var visited = 0
        var previous: (node: Address, key: S.Key)? = nil

        while true {
            while let entry = current {
                if visited >= limit {
                    report.add(.cycle, "walk stopped after \(limit) nodes")
                    return report.finish()
                }
                visited += 1
                stack.append(entry)
                current = enter(child: entry.links.left, onLeft: true, of: entry.node,
                                parentLinks: entry.links, parentBlackDepth: entry.blackDepth,
                                report: &report, store: &store)
            }
            guard let entry = stack.popLast() else { break }
            let key = store.key(of: entry.node)
            if let previous, !(previous.key < key) {
                report.add(.orderBroken,
                           "key \(key) of node \(entry.node) does not follow key \(previous.key) of node \(previous.node)")
            }
            previous = (entry.node, key)
            current = enter(child: entry.links.right, onLeft: false, of: entry.node,
                            parentLinks: entry.links, parentBlackDepth: entry.blackDepth,
                            report: &report, store: &store)
        }
        return report.finish()
    }

    /// Checks the edge from `parent` to `child`; returns the child's entry if it should be walked.
    private func enter<S: RedBlackNodeStore>(
        child: Address?, onLeft: Bool, of parent: Address,
        parentLinks: RedBlackLinks<Address>, parentBlackDepth: Int,
        report: inout ValidationReport<Address>, store: inout S
    ) -> (node: Address, links: RedBlackLinks<Address>, blackDepth: Int)?
    where S.Address == Address {
        let side = onLeft ? "left" : "right"
        guard let child else {
            report.recordLeaf(blackDepth: parentBlackDepth, under: parent, side: side)
            return nil
        }
        guard report.seen.insert(child).inserted else {
            report.add(.cycle, "node \(child), the \(side) child of \(parent), was already reached")
            return nil
        }
        let links = store.links(of: child)
        if links.parent != parent {
            let actual = links.parent.map { "\($0)" } ?? "nil"
            report.add(.parentLinkBroken,
                       "node \(child), the \(side) child of \(parent), has parent \(actual)")
        }
        if parentLinks.color == .red && links.color == .red {
            report.add(.redRedEdge, "red node \(parent) has red \(side) child \(child)")
        }
        return (child, links, parentBlackDepth + (links.color == .black ? 1 : 0))
    }
}

/// Accumulates violations during one `validate` walk.
private struct ValidationReport<Address: Hashable> {
    var violations: [RedBlackViolation] = []
    var seen = Set<Address>()
    /// Black depth of the first nil position met, and where it was.
    var expectedLeafDepth: (depth: Int, place: String)? = nil
    var mismatchedLeaves = 0
    var firstMismatch = ""

    mutating func add(_ kind: RedBlackViolation.Kind, _ message: String) {
        violations.append(RedBlackViolation(kind: kind, message: message))
    }

    mutating func recordLeaf(blackDepth: Int, under parent: Address, side: String) {
        guard let expected = expectedLeafDepth else {
            expectedLeafDepth = (blackDepth, "the \(side) of \(parent)")
            return
        }
        if blackDepth != expected.depth {
            if mismatchedLeaves == 0 {
                firstMismatch = "the nil \(side) child of \(parent) is under \(blackDepth) black nodes, "
                    + "but the nil at \(expected.place) is under \(expected.depth)"
            }
            mismatchedLeaves += 1
        }
    }

    func finish() -> [RedBlackViolation] {
        guard mismatchedLeaves > 0 else { return violations }
        let extra = mismatchedLeaves > 1 ? " (\(mismatchedLeaves) nil positions differ)" : ""
        return violations + [RedBlackViolation(kind: .blackHeightMismatch, message: firstMismatch + extra)]
    }
}
