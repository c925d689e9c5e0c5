import Blkif
import FakeXen
import Trace

/// The tree a connection publishes, against the red-black rules and the
/// reference's tree. Only a connection whose mode is as negotiated is looked
/// at, and only when either tree may have changed (see `TreeCheckMemo`).
extension Checks {
    /// `tree-count`: the published persistent-grant count is the number of nodes in the tree.
    static func treeCount(_ expected: TreeExpectation, _ observed: TreeObservation<some ObservedWorld>,
                          into findings: inout [Finding]) {
        let count = observed.connection.persistentCount
        let nodes = observed.tree.nodes.count
        guard count != nodes else { return }
        findings.append(Finding(.treeCount, in: .tree, expected: "count \(nodes) (nodes in the tree)", seen: "count \(count)"))
    }

    /// `grant-limit`: neither the count nor the tree exceeds the connection's persistent-grant limit.
    static func grantLimit(_ expected: TreeExpectation, _ observed: TreeObservation<some ObservedWorld>,
                           into findings: inout [Finding]) {
        let largest = max(observed.connection.persistentCount, observed.tree.nodes.count)
        guard largest > expected.limit else { return }
        findings.append(Finding(.grantLimit, in: .tree, expected: "at most \(expected.limit) persistent grants", seen: "\(largest)"))
    }

    /// `tree-order`: in order, the nodes' grefs strictly increase.
    static func treeOrder(_ expected: TreeExpectation, _ observed: TreeObservation<some ObservedWorld>,
                          into findings: inout [Finding]) {
        let nodes = observed.tree.nodes
        guard let bad = zip(nodes, nodes.dropFirst()).first(where: { $0.0.gref >= $0.1.gref }) else { return }
        findings.append(Finding(.treeOrder, in: .tree, expected: "grefs strictly increasing in order",
                                seen: "\(bad.0.gref) before \(bad.1.gref)"))
    }

    /// `tree-balance`: the tree is a red-black tree (see `RedBlackRules`).
    static func treeBalance(_ expected: TreeExpectation, _ observed: TreeObservation<some ObservedWorld>,
                            into findings: inout [Finding]) {
        guard let problem = RedBlackRules.firstProblem(in: observed.tree) else { return }
        findings.append(Finding(.treeBalance, in: .tree, expected: "a red-black tree", seen: problem))
    }

    /// `tree-contents`: the tree holds exactly the grefs the reference's tree holds.
    static func treeContents(_ expected: TreeExpectation, _ observed: TreeObservation<some ObservedWorld>,
                             into findings: inout [Finding]) {
        // The usual case without building sets: grefs strictly increasing in
        // order are distinct, so as many of them as the reference holds, all
        // held by the reference, are exactly the reference's grefs.
        let nodes = observed.tree.nodes
        // Read once: each read takes the map from the connection.
        let grants = expected.grants
        if nodes.count == grants.count,
           zip(nodes, nodes.dropFirst()).allSatisfy({ $0.0.gref < $0.1.gref }),
           nodes.allSatisfy({ grants[$0.gref] != nil }) {
            return
        }
        let seenSet = Set(observed.tree.nodes.map(\.gref))
        let wantSet = Set(grants.grefs)
        guard seenSet != wantSet else { return }
        let missing = wantSet.subtracting(seenSet).sorted().map { "\($0)" }
        let extra = seenSet.subtracting(wantSet).sorted().map { "\($0)" }
        findings.append(Finding(.treeContents, in: .tree, expected: "grefs " + Wording.list(wantSet.sorted().map { "\($0)" }),
                                seen: (missing.isEmpty ? "" : "missing " + Wording.list(missing) + " ")
                                    + (extra.isEmpty ? "" : "extra " + Wording.list(extra))))
    }

    /// `tree-mapping`: every node's handle is a live, writable mapping of
    /// that node's gref in the connection's domain, and the handle its map
    /// returned.
    static func treeMapping(_ expected: TreeExpectation, _ observed: TreeObservation<some ObservedWorld>,
                            into findings: inout [Finding]) {
        var wrong: [String] = []
        // Read once: each read takes the map from the connection.
        let grants = expected.grants
        for node in observed.tree.nodes {
            guard let mapping = observed.world.mapping(handle: node.handle) else {
                wrong.append("gref \(node.gref): handle \(node.handle) maps nothing")
                continue
            }
            if mapping.gref != node.gref || mapping.domid != expected.domid {
                wrong.append("gref \(node.gref): handle \(node.handle) maps gref \(mapping.gref) of domain \(mapping.domid)")
            } else if mapping.readOnly {
                wrong.append("gref \(node.gref): mapped read-only")
            } else if let predicted = grants[node.gref], predicted != node.handle {
                wrong.append("gref \(node.gref): handle \(node.handle), but its map returned \(predicted)")
            }
        }
        guard !wrong.isEmpty else { return }
        findings.append(Finding(.treeMapping, in: .tree, expected: "every node a live writable mapping of its gref",
                                seen: Wording.list(wrong, limit: 3)))
    }
}

/// The red-black properties, checked on the published shape with our own code.
enum RedBlackRules {
    static func firstProblem(in tree: ObservedTree) -> String? {
        if let broken = tree.brokenLinks.first { return broken }
        let nodes = tree.nodes
        guard let root = tree.root else { return nodes.isEmpty ? nil : "\(nodes.count) nodes but no root" }
        if nodes[root].isRed { return "the root (gref \(nodes[root].gref)) is red" }
        // Iterative post-order: black height of each subtree, or a problem.
        var blackHeight = [Int](repeating: -1, count: nodes.count)
        var stack: [(Int, Bool)] = [(root, false)]
        stack.reserveCapacity(nodes.count + 2)
        var visited = 0
        while let (index, childrenDone) = stack.popLast() {
            let node = nodes[index]
            if !childrenDone {
                visited += 1
                if visited > nodes.count { return "a node is reachable twice" }
                stack.append((index, true))
                // Left, then right (so the right is walked first); no list of the two per node.
                for side in 0..<2 {
                    guard let child = side == 0 ? node.left : node.right else { continue }
                    guard child >= 0 && child < nodes.count else { return "a link out of the tree" }
                    if node.isRed && nodes[child].isRed {
                        return "red gref \(node.gref) has a red child gref \(nodes[child].gref)"
                    }
                    stack.append((child, false))
                }
                continue
            }
            let left = node.left.map { blackHeight[$0] } ?? 0
            let right = node.right.map { blackHeight[$0] } ?? 0
            if left != right {
                return "black heights differ under gref \(node.gref): \(left) on the left, \(right) on the right"
            }
            blackHeight[index] = left + (node.isRed ? 0 : 1)
        }
        if visited != nodes.count { return "\(nodes.count - visited) node(s) not reachable from the root" }
        return nil
    }
}
