import Blkif
@testable import FakeXen
@testable import Oracle
import Testing
import Trace

/// Trees built by hand: nodes are listed in order, children by index.
@Suite struct TreeCheckTests {
    /// The reference's tree: grefs 1, 2, 3 mapped as handles 10, 20, 30, at its limit of 3.
    let expected: TreeExpectation = {
        TreeExpectation(vbd: 0, connection: connectionModel(limit: 3, tree: [1: 10, 2: 20, 3: 30]))
    }()

    /// A black 2 with red children 1 and 3.
    let goodNodes = [
        ObservedNode(gref: 1, isRed: true, handle: 10, left: nil, right: nil),
        ObservedNode(gref: 2, isRed: false, handle: 20, left: 0, right: 2),
        ObservedNode(gref: 3, isRed: true, handle: 30, left: nil, right: nil),
    ]

    func observed(_ nodes: [ObservedNode], root: Int? = 1, count: Int? = nil,
                  mappings: [GrantMapping]? = nil) -> TreeObservation<StubWorld> {
        var world = StubWorld()
        world.mappings = mappings ?? nodes.map { mapping(handle: $0.handle, gref: $0.gref) }
        return TreeObservation(
            connection: ObservedConnection(persistentMode: true, persistentCount: count ?? nodes.count, treeVersion: 1),
            tree: ObservedTree(nodes: nodes, root: root, brokenLinks: []), world: world)
    }

    func all(_ observed: TreeObservation<StubWorld>) -> [Finding] {
        found { Checks.treeCount(expected, observed, into: &$0) } + found { Checks.grantLimit(expected, observed, into: &$0) } + found { Checks.treeOrder(expected, observed, into: &$0) }
            + found { Checks.treeBalance(expected, observed, into: &$0) } + found { Checks.treeContents(expected, observed, into: &$0) }
            + found { Checks.treeMapping(expected, observed, into: &$0) }
    }

    @Test func theReferenceTreeAsAValidRedBlackTreePassesEveryCheck() {
        #expect(all(observed(goodNodes)) == [])
    }

    @Test func aCountThatIsNotTheNodeCount() {
        #expect(all(observed(goodNodes, count: 2)) == [
            Finding(.treeCount, in: .tree, expected: "count 3 (nodes in the tree)", seen: "count 2"),
        ])
    }

    @Test func aCountOverTheLimit() {
        #expect(all(observed(goodNodes, count: 5)).map(\.check) == [.treeCount, .grantLimit])
        #expect(found { Checks.grantLimit(expected, observed(goodNodes, count: 5), into: &$0) }.first?.seen == "5")
        #expect(found { Checks.grantLimit(expected, observed(goodNodes, count: 5), into: &$0) }.first?.expected == "at most 3 persistent grants")
    }

    @Test func grefsOutOfOrder() {
        var nodes = goodNodes
        nodes[0] = ObservedNode(gref: 4, isRed: true, handle: 10, left: nil, right: nil)
        let findings = found { Checks.treeOrder(expected, observed(nodes), into: &$0) }
        #expect(findings == [Finding(.treeOrder, in: .tree, expected: "grefs strictly increasing in order",
                                     seen: "4 before 2")])
    }

    @Test func aRedRootIsNotARedBlackTree() {
        var nodes = goodNodes
        nodes[1] = ObservedNode(gref: 2, isRed: true, handle: 20, left: 0, right: 2)
        let findings = all(observed(nodes))
        #expect(findings.map(\.check) == [.treeBalance])
        #expect(findings.first?.seen == "the root (gref 2) is red")
    }

    @Test func unequalBlackHeights() {
        var nodes = goodNodes
        nodes[2] = ObservedNode(gref: 3, isRed: false, handle: 30, left: nil, right: nil)
        #expect(found { Checks.treeBalance(expected, observed(nodes), into: &$0) }.map(\.seen)
                == ["black heights differ under gref 2: 0 on the left, 1 on the right"])
    }

    @Test func aMissingAndAnExtraGref() {
        var nodes = goodNodes
        nodes[2] = ObservedNode(gref: 5, isRed: true, handle: 30, left: nil, right: nil)
        let findings = found { Checks.treeContents(expected, observed(nodes, mappings: [
            mapping(handle: 10, gref: 1), mapping(handle: 20, gref: 2), mapping(handle: 30, gref: 5),
        ]), into: &$0) }
        #expect(findings == [Finding(.treeContents, in: .tree, expected: "grefs 1, 2, 3", seen: "missing 3 extra 5")])
    }

    @Test func aNodeWhoseHandleMapsSomethingElseOrIsReadOnly() {
        let mappings = [mapping(handle: 10, gref: 1, readOnly: true), mapping(handle: 20, gref: 2),
                        mapping(handle: 30, gref: 7)]
        let findings = all(observed(goodNodes, mappings: mappings))
        #expect(findings.map(\.check) == [.treeMapping])
        #expect(findings.first?.seen == "gref 1: mapped read-only, gref 3: handle 30 maps gref 7 of domain 3")
    }

    @Test func aNodeWithAnotherHandleThanItsMapReturned() {
        var nodes = goodNodes
        nodes[0] = ObservedNode(gref: 1, isRed: true, handle: 11, left: nil, right: nil)
        #expect(found { Checks.treeMapping(expected, observed(nodes), into: &$0) }.map(\.seen)
                == ["gref 1: handle 11, but its map returned 10"])
    }
}

@Suite struct TreeCheckMemoTests {
    @Test func anUnchangedTreeIsNotReReadUnlessSomethingUnexpectedWasUnmapped() {
        var memo = TreeCheckMemo()
        func needsCheck(vbd: UInt16 = 0, _ reference: UInt64, _ observed: UInt64, surprises: Bool = false) -> Bool {
            memo.needsCheck(vbd: vbd, referenceVersion: reference, observedVersion: observed,
                            afterUnexpectedUnmaps: surprises)
        }
        #expect(needsCheck(1, 5))
        #expect(!needsCheck(1, 5))
        #expect(needsCheck(1, 5, surprises: true))
        #expect(needsCheck(1, 6))
        #expect(needsCheck(vbd: 1, 1, 6))
        #expect(!needsCheck(1, 6))
        memo.forget(vbd: 0)
        #expect(needsCheck(1, 6))
    }
}
