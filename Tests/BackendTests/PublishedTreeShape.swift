import Blkif
import Backend
@_spi(Testing) import RedBlackTree

extension PublishedTree {
    /// Why this is not a red-black search tree in gref order, empty when it is:
    /// its broken links as published, then the tree's own validation run over a
    /// copy of the published nodes, and whether walking the links from the root
    /// gives exactly the published nodes in their published order.
    var shapeProblems: [String] {
        // Node i of the copy is published node i. The published nodes carry child links only;
        // each node's parent is taken to be the node it hangs under (a node hanging under two
        // is reached twice, which the validation reports).
        var store = ArrayNodeStore<GrantRef>()
        var parents = [Int?](repeating: nil, count: nodes.count)
        for (index, node) in nodes.enumerated() {
            _ = store.allocate(key: node.gref)
            for child in [node.left, node.right].compactMap({ $0 }) where parents.indices.contains(child) {
                parents[child] = index
            }
        }
        for (index, node) in nodes.enumerated() {
            store.setLinks(RedBlackLinks(parent: parents[index], left: node.left, right: node.right, color: node.color),
                           of: index)
        }
        let tree = RedBlackTree<Int>(root: root)
        var problems = brokenLinks + tree.validate(in: &store).map(\.description)
        let walked = tree.inOrder(in: &store)
        if walked != Array(nodes.indices) {
            problems.append("walking the links from the root gives nodes \(walked), not the \(nodes.count) published")
        }
        return problems
    }
}
