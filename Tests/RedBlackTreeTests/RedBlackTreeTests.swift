import Seeded
import Testing
@_spi(Testing) import RedBlackTree

// MARK: - Helpers

/// A store that forwards to an `ArrayNodeStore` and counts writes to one watched node.
private struct WatchingStore: RedBlackNodeStore {
    var base = ArrayNodeStore<Int>()
    var watched: Int? = nil
    var watchedWrites = 0

    mutating func key(of node: Int) -> Int { base.key(of: node) }
    mutating func links(of node: Int) -> RedBlackLinks<Int> { base.links(of: node) }
    mutating func setLinks(_ links: RedBlackLinks<Int>, of node: Int) {
        if node == watched { watchedWrites += 1 }
        base.setLinks(links, of: node)
    }
}

/// A store whose freed nodes read back as garbage, like a kernel heap after kfree.
private struct FreeingStore: RedBlackNodeStore {
    var base = ArrayNodeStore<Int>()
    var freed = Set<Int>()
    var poison: RedBlackTreeTestPoison
    var rootHint: Int? = nil
    var useAfterFreeReads = 0
    var useAfterFreeWrites = 0

    init(poison: RedBlackTreeTestPoison) { self.poison = poison }

    mutating func key(of node: Int) -> Int {
        if freed.contains(node) { useAfterFreeReads += 1 }
        return base.key(of: node)
    }
    mutating func links(of node: Int) -> RedBlackLinks<Int> {
        guard freed.contains(node) else { return base.links(of: node) }
        useAfterFreeReads += 1
        switch poison {
        case .stale: return base.links(of: node)
        case .cleared: return .detached
        case .selfLoop: return RedBlackLinks(parent: node, left: node, right: node, color: .black)
        case .pointsAtRoot:
            return RedBlackLinks(parent: rootHint, left: rootHint, right: rootHint, color: .red)
        }
    }
    mutating func setLinks(_ links: RedBlackLinks<Int>, of node: Int) {
        if freed.contains(node) { useAfterFreeWrites += 1 }
        base.setLinks(links, of: node)
    }
}


/// Every permutation of `0..<n`, in lexicographic order.
private func permutations(of n: Int) -> [[Int]] {
    var current = Array(0..<n)
    var result = [current]
    while true {
        var i = n - 2
        while i >= 0 && current[i] >= current[i + 1] { i -= 1 }
        if i < 0 { return result }
        var j = n - 1
        while current[j] <= current[i] { j -= 1 }
        current.swapAt(i, j)
        current[(i + 1)...].reverse()
        result.append(current)
    }
}

/// A tree over an `ArrayNodeStore` whose node `k` holds key `k` for `k` in `0..<n`.
private func makeFixture(_ n: Int) -> (RedBlackTree<Int>, ArrayNodeStore<Int>) {
    var store = ArrayNodeStore<Int>()
    for key in 0..<n { _ = store.allocate(key: key) }
    return (RedBlackTree<Int>(), store)
}

private func build(_ keys: [Int], size: Int? = nil) -> (RedBlackTree<Int>, ArrayNodeStore<Int>) {
    var (tree, store) = makeFixture(size ?? ((keys.max() ?? -1) + 1))
    for key in keys { _ = tree.insert(key, in: &store) }
    return (tree, store)
}

/// Root plus the links of every member (node address == key): the whole state that later
/// operations on members depend on.
private func encode<S: RedBlackNodeStore>(_ tree: RedBlackTree<Int>, _ store: inout S, members: [Int]) -> [Int]
where S.Address == Int {
    var code = [tree.root ?? -1]
    for node in members {
        let links = store.links(of: node)
        code += [node, links.parent ?? -1, links.left ?? -1, links.right ?? -1, links.color == .red ? 1 : 0]
    }
    return code
}

/// Full consistency check of a tree whose node address equals its key.
private func expectConsistent<S: RedBlackNodeStore>(
    _ tree: RedBlackTree<Int>, _ store: inout S, members sorted: [Int], _ context: @autoclosure () -> String
) -> Bool where S.Address == Int, S.Key == Int {
    let violations = tree.validate(in: &store)
    let order = tree.inOrder(in: &store)
    var ok = violations.isEmpty && order == sorted
    ok = ok && tree.first(in: &store) == sorted.first && tree.last(in: &store) == sorted.last
    ok = ok && tree.isEmpty == sorted.isEmpty
    if ok {
        for (index, node) in sorted.enumerated() {
            let expectedNext = index + 1 < sorted.count ? sorted[index + 1] : nil
            let expectedPrevious = index > 0 ? sorted[index - 1] : nil
            if tree.next(node, in: &store) != expectedNext
                || tree.previous(node, in: &store) != expectedPrevious
                || tree.search(store.key(of: node), in: &store) != node {
                ok = false
                break
            }
        }
    }
    if !ok {
        Issue.record("\(context()): violations \(violations), in-order \(order), expected \(sorted)")
    }
    return ok
}

// MARK: - Tests

@Suite struct RedBlackTreeTests {
    @Test func emptyTree() {
        var (tree, store) = makeFixture(3)
        #expect(tree.isEmpty)
        #expect(tree.root == nil)
        #expect(tree.search(1, in: &store) == nil)
        #expect(tree.first(in: &store) == nil)
        #expect(tree.last(in: &store) == nil)
        #expect(tree.inOrder(in: &store).isEmpty)
        #expect(tree.validate(in: &store).isEmpty)
    }

    @Test func ascendingInsertionGivesTextbookShape() {
        // Inserting 1...7 in order: 2B(1B, 4R(3B, 6B(5R, 7R))).
        var (tree, store) = build(Array(1...7))
        #expect(tree.root == 2)
        let expected: [Int: RedBlackLinks<Int>] = [
            2: .init(parent: nil, left: 1, right: 4, color: .black),
            1: .init(parent: 2, left: nil, right: nil, color: .black),
            4: .init(parent: 2, left: 3, right: 6, color: .red),
            3: .init(parent: 4, left: nil, right: nil, color: .black),
            6: .init(parent: 4, left: 5, right: 7, color: .black),
            5: .init(parent: 6, left: nil, right: nil, color: .red),
            7: .init(parent: 6, left: nil, right: nil, color: .red),
        ]
        for (node, links) in expected {
            #expect(store.links(of: node) == links, "node \(node)")
        }
    }

    /// Every insertion order of n distinct keys, n ≤ 7, validated after every insert.
    @Test func everyInsertionOrderUpToSeven() {
        for n in 1...7 {
            for order in permutations(of: n) {
                var (tree, store) = makeFixture(n)
                var members: [Int] = []
                for key in order {
                    #expect(tree.insert(key, in: &store) == .inserted)
                    members.append(key)
                    members.sort()
                    guard expectConsistent(tree, &store, members: members, "insertion order \(order)") else {
                        return
                    }
                }
            }
        }
    }

    /// Every insertion order × every erase order for n ≤ 7. Erasing depends only on the tree's
    /// state (root and members' links), so each distinct state is expanded once; that covers all
    /// (insertion order, erase order) pairs — 5040 × 5040 for n = 7 — exactly.
    @Test func everyInsertionOrderTimesEveryEraseOrder() {
        for n in 1...7 {
            var frontier: [(RedBlackTree<Int>, WatchingStore, [Int])] = []
            var seen = Set<[Int]>()
            let all = Array(0..<n)
            for order in permutations(of: n) {
                var store = WatchingStore()
                for key in 0..<n { _ = store.base.allocate(key: key) }
                var tree = RedBlackTree<Int>()
                for key in order { _ = tree.insert(key, in: &store) }
                if seen.insert(encode(tree, &store, members: all)).inserted {
                    frontier.append((tree, store, all))
                }
            }
            var erasures = 0
            while let (tree, store, members) = frontier.popLast() {
                for victim in members {
                    var tree = tree
                    var store = store
                    let before = store.links(of: victim)
                    store.watched = victim
                    store.watchedWrites = 0
                    tree.erase(victim, in: &store)
                    erasures += 1
                    let remaining = members.filter { $0 != victim }
                    let context = "n \(n), erasing \(victim) from \(members)"
                    #expect(store.watchedWrites == 0, "\(context): erase wrote the erased node")
                    #expect(store.links(of: victim) == before, "\(context): erased node's links changed")
                    _ = tree.next(victim, in: &store)  // stale links: must not trap
                    _ = tree.previous(victim, in: &store)
                    #expect(tree.search(victim, in: &store) == nil, "\(context)")
                    guard expectConsistent(tree, &store, members: remaining, context) else { return }
                    if seen.insert(encode(tree, &store, members: remaining)).inserted {
                        frontier.append((tree, store, remaining))
                    }
                }
            }
            #expect(erasures > 0)
        }
    }

    /// Every state reachable from the empty tree by any interleaving of inserts and erases over
    /// keys 0..<6 is valid and agrees with its key set.
    @Test func everyInterleavingOfInsertAndEraseOverSixKeys() {
        let n = 6
        let (empty, emptyStore) = makeFixture(n)
        var scratch = emptyStore
        var seen: Set<[Int]> = [encode(empty, &scratch, members: [])]
        var frontier = [(empty, emptyStore, [Int]())]
        while let (tree, store, members) = frontier.popLast() {
            for key in 0..<n {
                var tree = tree
                var store = store
                var next = members
                if members.contains(key) {
                    tree.erase(key, in: &store)
                    next.removeAll { $0 == key }
                } else {
                    #expect(tree.insert(key, in: &store) == .inserted)
                    next.append(key)
                    next.sort()
                }
                guard expectConsistent(tree, &store, members: next, "op on \(key) from \(members)") else {
                    return
                }
                if seen.insert(encode(tree, &store, members: next)).inserted {
                    frontier.append((tree, store, next))
                }
            }
        }
        #expect(seen.count > 64)
    }

    @Test func duplicateIsRejectedWithExistingNode() {
        var (tree, store) = build([5, 3, 8, 1, 4])
        let fresh = store.allocate(key: 4)
        let marker = RedBlackLinks<Int>(parent: 99, left: 98, right: 97, color: .black)
        store.setLinks(marker, of: fresh)
        let before = tree.inOrder(in: &store).map { store.links(of: $0) }
        #expect(tree.insert(fresh, in: &store) == .duplicate(existing: 4))
        #expect(store.links(of: fresh) == marker, "a rejected node's links are not written")
        #expect(tree.inOrder(in: &store).map { store.links(of: $0) } == before)
        #expect(tree.inOrder(in: &store) == [1, 3, 4, 5, 8])
        // Inserting a node that is already linked finds itself.
        #expect(tree.insert(8, in: &store) == .duplicate(existing: 8))
        #expect(tree.validate(in: &store).isEmpty)
    }

    @Test func walksAgreeWithSortedOrder() {
        var rng = SplitMix64(seed: 7)
        let keys = Array(0..<200).shuffled(using: &rng)
        var store = ArrayNodeStore<Int>()
        var tree = RedBlackTree<Int>()
        var byKey: [Int: Int] = [:]
        for key in keys {
            let node = store.allocate(key: key * 3)
            byKey[key * 3] = node
            #expect(tree.insert(node, in: &store) == .inserted)
        }
        let sortedNodes = byKey.keys.sorted().compactMap { byKey[$0] }
        #expect(tree.inOrder(in: &store) == sortedNodes)
        #expect(tree.first(in: &store) == sortedNodes.first)
        #expect(tree.last(in: &store) == sortedNodes.last)
        var walked: [Int] = []
        var cursor = tree.first(in: &store)
        while let node = cursor { walked.append(node); cursor = tree.next(node, in: &store) }
        #expect(walked == sortedNodes)
        var backwards: [Int] = []
        cursor = tree.last(in: &store)
        while let node = cursor { backwards.append(node); cursor = tree.previous(node, in: &store) }
        #expect(backwards == sortedNodes.reversed())
        #expect(tree.search(1, in: &store) == nil)
        #expect(tree.search(300, in: &store) == byKey[300])
        #expect(tree.validate(in: &store).isEmpty)
    }

    /// After erase the node keeps its stale links, and `next` from it reads them like `rb_next`.
    @Test func erasedNodeKeepsStaleLinksAndNextFollowsThem() {
        var (tree, store) = build([4, 2, 6, 1, 3, 5, 7], size: 8)
        // 4 is the root with children 2 and 6; its successor 5 replaces it.
        let before = store.links(of: 4)
        #expect(before.parent == nil && before.left == 2 && before.right == 6)
        tree.erase(4, in: &store)
        #expect(store.links(of: 4) == before)
        #expect(tree.root == 5)
        // rb_next(4) from the stale links: leftmost of the stale right child 6 -> now 6 has no
        // left child (5 moved up), so the answer is 6.
        #expect(tree.next(4, in: &store) == 6)
        #expect(tree.inOrder(in: &store) == [1, 2, 3, 5, 6, 7])

        // The seed's teardown pattern: erase, then take rb_next of the erased node.
        var visited: [Int] = []
        var cursor = tree.first(in: &store)
        var guardSteps = 0
        while let node = cursor, guardSteps < 100 {
            guardSteps += 1
            visited.append(node)
            tree.erase(node, in: &store)
            cursor = tree.next(node, in: &store)
        }
        #expect(guardSteps < 100)
        #expect(tree.validate(in: &store).isEmpty)
        #expect(Set(visited).isSubset(of: [1, 2, 3, 5, 6, 7]))
    }

    /// The seed's teardown loop over a heap whose freed nodes read back as garbage must never
    /// trap or hang, whatever the poison.
    @Test(arguments: RedBlackTreeTestPoison.allCases)
    func teardownOverFreedNodesTerminates(_ poisonCase: RedBlackTreeTestPoison) {
        var store = FreeingStore(poison: poisonCase)
        var tree = RedBlackTree<Int>(walkLimit: 64)
        var rng = SplitMix64(seed: 11)
        for key in Array(0..<40).shuffled(using: &rng) {
            _ = tree.insert(store.base.allocate(key: key), in: &store)
        }
        var cursor = tree.first(in: &store)
        var steps = 0
        while let node = cursor, steps < 1000 {
            steps += 1
            store.rootHint = tree.root
            tree.erase(node, in: &store)
            store.freed.insert(node)
            cursor = tree.next(node, in: &store)  // reads freed memory
        }
        _ = tree.validate(in: &store)
        _ = tree.inOrder(in: &store)
        _ = tree.search(17, in: &store)
        #expect(steps < 1000 || poisonCase == .pointsAtRoot)
        #expect(store.useAfterFreeReads > 0)
    }

    /// Long seeded random sequences against a `Set` model, validated after every operation.
    @Test(arguments: 0..<20)
    func randomOperationsMatchModel(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed) &* 0x1234_5678_9ABC_DEF1 &+ 1)
        var store = ArrayNodeStore<Int>()
        var tree = RedBlackTree<Int>()
        var model: [Int: Int] = [:]  // key -> node
        for step in 0..<5000 {
            let key = Int.random(in: 0..<300, using: &rng)
            let context = "seed \(seed) step \(step) key \(key)"
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4:
                let node = store.allocate(key: key)
                let result = tree.insert(node, in: &store)
                if let existing = model[key] {
                    #expect(result == .duplicate(existing: existing), "\(context)")
                } else {
                    #expect(result == .inserted, "\(context)")
                    model[key] = node
                }
            case 4..<8:
                if let node = model[key] ?? model.values.randomElement(using: &rng) {
                    let before = store.links(of: node)
                    tree.erase(node, in: &store)
                    #expect(store.links(of: node) == before, "\(context)")
                    model[store.key(of: node)] = nil
                }
            default:
                #expect(tree.search(key, in: &store) == model[key], "\(context)")
            }
            let violations = tree.validate(in: &store)
            guard violations.isEmpty else {
                Issue.record("\(context): \(violations)")
                return
            }
            if step % 50 == 0 || step == 4999 {
                let expected = model.keys.sorted().compactMap { model[$0] }
                guard tree.inOrder(in: &store) == expected else {
                    Issue.record("\(context): in-order differs from model")
                    return
                }
                #expect(tree.first(in: &store) == expected.first, "\(context)")
                #expect(tree.last(in: &store) == expected.last, "\(context)")
            }
        }
    }

    // MARK: Corruption

    /// 0..<10 inserted in order: 3B(1B(0B, 2B), 5B(4B, 7R(6B, 8B(9R)))).
    private func corruptible() -> (RedBlackTree<Int>, ArrayNodeStore<Int>) {
        var (tree, store) = build(Array(0..<10))
        #expect(tree.root == 3)
        #expect(store.links(of: 7).color == .red && store.links(of: 9).color == .red)
        #expect(tree.validate(in: &store).isEmpty)
        return (tree, store)
    }

    private func kinds(_ tree: RedBlackTree<Int>, _ store: inout ArrayNodeStore<Int>) -> Set<RedBlackViolation.Kind> {
        Set(tree.validate(in: &store).map(\.kind))
    }

    @Test func validateCatchesRedRoot() {
        var (tree, store) = corruptible()
        var links = store.links(of: 3)
        links.color = .red
        store.setLinks(links, of: 3)
        #expect(kinds(tree, &store) == [.rootNotBlack])
    }

    @Test func validateCatchesRedRedEdge() {
        var (tree, store) = corruptible()
        // Swap colours of 7 (red) and its black children 6 and 8: heights stay equal, but 8's red
        // child 9 now hangs under a red node.
        for node in [6, 8] {
            var links = store.links(of: node); links.color = .red; store.setLinks(links, of: node)
        }
        var links = store.links(of: 7); links.color = .black; store.setLinks(links, of: 7)
        #expect(kinds(tree, &store) == [.redRedEdge])
    }

    @Test func validateCatchesBlackHeightMismatch() {
        var (tree, store) = corruptible()
        var links = store.links(of: 9)
        links.color = .black
        store.setLinks(links, of: 9)
        #expect(kinds(tree, &store) == [.blackHeightMismatch])
    }

    @Test func validateCatchesOutOfOrderKey() {
        var (tree, store) = corruptible()
        store.setKey(42, of: 4)
        #expect(kinds(tree, &store) == [.orderBroken])
        store.setKey(5, of: 4)  // equal keys are not strictly increasing
        #expect(kinds(tree, &store) == [.orderBroken])
    }

    @Test func validateCatchesBrokenParentLink() {
        var (tree, store) = corruptible()
        var links = store.links(of: 6)
        links.parent = 5
        store.setLinks(links, of: 6)
        #expect(kinds(tree, &store) == [.parentLinkBroken])
        // A root with a parent is broken too.
        (tree, store) = corruptible()
        links = store.links(of: 3)
        links.parent = 9
        store.setLinks(links, of: 3)
        #expect(kinds(tree, &store) == [.parentLinkBroken])
    }

    @Test func validateCatchesCycles() {
        // A leaf's child pointing back at the root, and a node pointing at itself.
        for (node, onLeft, target) in [(9, true, 3), (0, false, 0), (2, true, 1)] {
            var (tree, store) = corruptible()
            var links = store.links(of: node)
            if onLeft { links.left = target } else { links.right = target }
            store.setLinks(links, of: node)
            let found = kinds(tree, &store)
            #expect(found.contains(.cycle), "\(node) -> \(target): \(found)")
        }
    }

    /// Every algorithm terminates on cyclic links, none traps.
    @Test func everythingTerminatesOnCycles() {
        let corruptions: [(node: Int, links: RedBlackLinks<Int>)] = [
            (0, .init(parent: 1, left: 3, right: nil, color: .black)),       // leftmost leads to root
            (9, .init(parent: 8, left: nil, right: 5, color: .red)),          // rightmost leads back up
            (8, .init(parent: 8, left: 8, right: 8, color: .black)),          // self loop everywhere
            (3, .init(parent: 9, left: 1, right: 5, color: .black)),          // root's parent inside
            (6, .init(parent: 6, left: nil, right: nil, color: .red)),        // a leaf its own parent
        ]
        for corruption in corruptions {
            var (tree, store) = corruptible()
            tree.walkLimit = 256
            store.setLinks(corruption.links, of: corruption.node)
            let context = "corrupting \(corruption.node)"
            #expect(tree.inOrder(in: &store, limit: 1000).count <= 1000, "\(context)")
            _ = tree.validate(in: &store, limit: 1000)
            _ = tree.first(in: &store)
            _ = tree.last(in: &store)
            for node in 0..<10 {
                _ = tree.next(node, in: &store)
                _ = tree.previous(node, in: &store)
                _ = tree.search(node, in: &store)
            }
            let extra = store.allocate(key: 100)
            _ = tree.insert(extra, in: &store)
            let low = store.allocate(key: -1)
            _ = tree.insert(low, in: &store)
            for node in [corruption.node, 3, 7, 0, 9] { tree.erase(node, in: &store) }
            _ = tree.inOrder(in: &store, limit: 1000)
            _ = tree.validate(in: &store, limit: 1000)
        }
    }

    @Test func inOrderAndValidateStopAtTheirLimit() {
        var (tree, store) = build(Array(0..<100))
        #expect(tree.inOrder(in: &store, limit: 10).count == 10)
        let violations = tree.validate(in: &store, limit: 10)
        #expect(violations.map(\.kind) == [.cycle])
        #expect(tree.validate(in: &store, limit: 100).isEmpty)
    }

    @Test func arrayStoreToleratesStrayAddresses() {
        var (tree, store) = corruptible()
        var links = store.links(of: 9)
        links.right = 12345
        store.setLinks(links, of: 9)
        _ = tree.validate(in: &store)
        _ = tree.inOrder(in: &store)
        _ = tree.search(1000, in: &store)
        tree.erase(9, in: &store)
        #expect(store.strayAccesses > 0)
        #expect(store.links(of: -5) == .detached)
    }

    @Test func violationDescriptionNamesKind() {
        let violation = RedBlackViolation(kind: .redRedEdge, message: "x")
        #expect(violation.description == "redRedEdge: x")
        #expect(RedBlackViolation.Kind.allCases.count == 6)
    }
}

/// How a freed node reads back in `FreeingStore`.
enum RedBlackTreeTestPoison: Sendable, CaseIterable {
    /// The old contents, untouched.
    case stale
    /// Zeroed: no links.
    case cleared
    /// Every link points at the node itself.
    case selfLoop
    /// Every link points at the current root.
    case pointsAtRoot
}
