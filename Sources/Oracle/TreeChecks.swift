import Blkif
import FakeXen
import Trace

extension ConformanceOracle {
    /// The published tree against the red-black rules and the reference set.
    func checkTree(vbd: UInt16, world: some ObservedWorld, unmapsHappened: Bool) {
        guard let model = connections[vbd] else { return }
        guard let observed = world.connection(vbd: vbd) else {
            report(.negotiation, expected: "vbd \(vbd) connected", seen: "the backend has no such connection")
            return
        }
        if observed.persistentMode != model.persistentMode { return }  // reported at connect
        // Neither tree changed and nothing was unmapped: the last check still holds.
        let versions = (model: model.version, observed: observed.treeVersion)
        if !unmapsHappened, let last = model.lastTreeCheck, last == versions { return }
        model.lastTreeCheck = versions
        guard let tree = world.tree(vbd: vbd) else { return }
        let nodes = tree.nodes
        if observed.persistentCount != nodes.count {
            report(.treeCount, expected: "count \(nodes.count) (nodes in the tree)", seen: "count \(observed.persistentCount)")
        }
        if observed.persistentCount > model.limit || nodes.count > model.limit {
            report(.grantLimit, expected: "at most \(model.limit) persistent grants",
                   seen: "\(max(observed.persistentCount, nodes.count))")
        }
        if let bad = zip(nodes, nodes.dropFirst()).first(where: { $0.0.gref >= $0.1.gref }) {
            report(.treeOrder, expected: "grefs strictly increasing in order", seen: "\(bad.0.gref) before \(bad.1.gref)")
        }
        if let problem = RedBlackRules.firstProblem(in: tree) {
            report(.treeBalance, expected: "a red-black tree", seen: problem)
        }
        let seenSet = Set(nodes.map(\.gref))
        let wantSet = Set(model.tree.keys)
        if seenSet != wantSet {
            let missing = wantSet.subtracting(seenSet).sorted().map { "\($0)" }
            let extra = seenSet.subtracting(wantSet).sorted().map { "\($0)" }
            report(.treeContents, expected: "grefs " + summarize(wantSet.sorted().map { "\($0)" }),
                   seen: (missing.isEmpty ? "" : "missing " + summarize(missing) + " ")
                       + (extra.isEmpty ? "" : "extra " + summarize(extra)))
        }
        var wrong: [String] = []
        for node in nodes {
            guard let mapping = world.mapping(handle: node.handle) else {
                wrong.append("gref \(node.gref): handle \(node.handle) maps nothing")
                continue
            }
            if mapping.gref != node.gref || mapping.domid != model.domid {
                wrong.append("gref \(node.gref): handle \(node.handle) maps gref \(mapping.gref) of domain \(mapping.domid)")
            } else if mapping.readOnly {
                wrong.append("gref \(node.gref): mapped read-only")
            } else if let predicted = model.tree[node.gref], predicted != node.handle {
                wrong.append("gref \(node.gref): handle \(node.handle), but its map returned \(predicted)")
            }
        }
        if !wrong.isEmpty {
            report(.treeMapping, expected: "every node a live writable mapping of its gref", seen: summarize(wrong, limit: 3))
        }
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
        var visited = 0
        while let (index, childrenDone) = stack.popLast() {
            let node = nodes[index]
            if !childrenDone {
                visited += 1
                if visited > nodes.count { return "a node is reachable twice" }
                stack.append((index, true))
                for child in [node.left, node.right].compactMap({ $0 }) {
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
