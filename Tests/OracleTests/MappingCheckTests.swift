import Blkif
@testable import FakeXen
@testable import Oracle
import Testing
import Trace

@Suite struct MapOpsCheckTests {
    let twoNewGrants = Prediction(mapOps: .oneBatch(domid: 3, ops: [
        ExpectedMapOp(gref: 1, readOnly: false), ExpectedMapOp(gref: 2, readOnly: false),
    ]))

    @Test func theBatchThePredictionNamesPasses() {
        let observed = observe([mapBatch([(1, false), (2, false)], handles: [10, 11])], for: twoNewGrants)
        #expect(found { Checks.mapOps(twoNewGrants, observed, into: &$0) } == [])
    }

    @Test func aReadOnlyOpWhereAWritableOneIsDueIsNamedWithItsPosition() {
        let observed = observe([mapBatch([(1, false), (2, true)], handles: [10, 11])], for: twoNewGrants)
        let findings = found { Checks.mapOps(twoNewGrants, observed, into: &$0) }
        #expect(findings.map(\.check) == [.mapOps])
        #expect(findings.first?.expected == "map gref 1 of domain 3 [host_map], map gref 2 of domain 3 [host_map]")
        #expect(findings.first?.seen.hasSuffix(
            "(op 1: expected map gref 2 of domain 3 [host_map], seen map gref 2 of domain 3 [host_map|readonly])") == true)
    }

    /// Ops are compared by what their words say; an op not of the expected
    /// kind still never passes for an expected one, and is named in its own words.
    @Test func anOpOfAnotherDomainOrWithoutHostMapIsReportedInItsOwnWords() {
        let otherDomain = mapBatch([(1, false), (2, false)], domid: 4, handles: [10, 11])
        let findings = found { Checks.mapOps(twoNewGrants, observe([otherDomain], for: twoNewGrants), into: &$0) }
        #expect(findings.first?.seen.hasSuffix(
            "(op 0: expected map gref 1 of domain 3 [host_map], seen map gref 1 of domain 4 [host_map])") == true)

        let deviceOnly = Observation.mapBatch(MapBatch(
            ops: [MapOp(hostPage: PageFrame(0), flags: .deviceMap, gref: 1, domid: 3),
                  MapOp(hostPage: PageFrame(0), flags: .hostMap, gref: 2, domid: 3)],
            results: [MapResult(status: .okay, handle: 10), MapResult(status: .okay, handle: 11)]))
        let noHostMap = found { Checks.mapOps(twoNewGrants, observe([deviceOnly], for: twoNewGrants), into: &$0) }
        #expect(noHostMap.first?.seen.hasSuffix(
            "(op 0: expected map gref 1 of domain 3 [host_map], seen map gref 1 of domain 3 [device_map])") == true)
    }

    @Test func noHypercallWhereOneBatchIsDue() {
        let findings = found { Checks.mapOps(twoNewGrants, observe(for: twoNewGrants), into: &$0) }
        #expect(findings.map(\.check) == [.mapOps])
        #expect(findings.first?.seen == "no map hypercall")
        #expect(findings.first?.expected.hasPrefix("one batch of 2 op(s): ") == true)
    }

    @Test func aRequestThatMapsNothingSaysWhy() {
        let prediction = Prediction(mapOps: .noBatch(because: "every segment is a persistent hit"))
        #expect(found { Checks.mapOps(prediction, observe(for: prediction), into: &$0) } == [])
        let findings = found { Checks.mapOps(prediction, observe([mapBatch([(1, false)], handles: [10])], for: prediction), into: &$0) }
        #expect(findings.map(\.expected) == ["no map hypercall: every segment is a persistent hit"])
        #expect(findings.map(\.seen) == ["1 batch(es): map gref 1 of domain 3 [host_map]"])
    }

    @Test func outsideARequestNoBatchAtAllAndUnreadableRequestsAreNotJudged() {
        let batch = mapBatch([(1, false)], handles: [10])
        let outside = Prediction()
        #expect(found { Checks.mapOps(outside, observe([batch], for: outside), into: &$0) }.map(\.seen) == ["1 map batch(es)"])
        let unreadable = Prediction(mapOps: .unjudged)
        #expect(found { Checks.mapOps(unreadable, observe([batch], for: unreadable), into: &$0) } == [])
    }
}

@Suite struct UnmapOpsCheckTests {
    @Test func unmappingExactlyTheExpectedHandlesPasses() {
        let prediction = Prediction(unmaps: [20, 21])
        let observed = observe([unmapBatch([(20, mapping(handle: 20, gref: 5)), (21, mapping(handle: 21, gref: 6))])],
                               for: prediction)
        #expect(found { Checks.unmapOps(prediction, observed, into: &$0) } == [])
        #expect(!observed.unmaps.hasSurprises)
    }

    @Test func unmappingAPersistentGrantIsCalledThat() {
        let model = connectionModel(tree: [1: 10])
        let prediction = Prediction(mappedAfter: ExpectedMappings(connections: [0: model]))
        let observed = observe([unmapBatch([(10, mapping(handle: 10, gref: 1))])], for: prediction)
        let findings = found { Checks.unmapOps(prediction, observed, into: &$0) }
        #expect(findings.map(\.check) == [.unmapOps])
        #expect(findings.first?.expected == "persistent grants stay mapped until disconnect")
        #expect(findings.first?.seen == "handle 10 of persistent gref 1 unmapped")
        #expect(observed.unmaps.hasSurprises)
    }

    @Test func aRefusedUnmapAndAMissedOneAreBothReported() {
        let prediction = Prediction(unmaps: [20])
        let observed = observe([unmapBatch([(99, nil)])], for: prediction)
        let findings = found { Checks.unmapOps(prediction, observed, into: &$0) }
        #expect(findings.map(\.seen) == ["unmap of handle 99 answered bad_handle", "not unmapped"])
        #expect(findings.last?.expected == "unmap of handle(s) 20")
    }

    @Test func aHandleUnmappedTwiceIsExpectedOnlyOnce() {
        let prediction = Prediction(unmaps: [20])
        let twice = unmapBatch([(20, mapping(handle: 20, gref: 5)), (20, mapping(handle: 20, gref: 5))])
        let findings = found { Checks.unmapOps(prediction, observe([twice], for: prediction), into: &$0) }
        #expect(findings.map(\.seen) == ["handle 20 (gref 5) unmapped"])
    }

    @Test func anOversizedBatchIsReportedBeforeItsOps() {
        let prediction = Prediction(unmaps: Set(1...12))
        let ops = (1...12).map { (handle: GrantHandle($0), unmapped: Optional(mapping(handle: GrantHandle($0), gref: 1))) }
        let findings = found { Checks.unmapOps(prediction, observe([unmapBatch(ops)], for: prediction), into: &$0) }
        #expect(findings.map(\.seen) == ["a batch of 12"])
    }

    @Test func atTeardownAMissedUnmapIsTeardownsNotUnmapOps() {
        let prediction = Prediction(unmaps: [20], teardown: ExpectedTeardown(vbd: 0, domid: 3))
        let observed = observe(for: prediction)
        #expect(found { Checks.unmapOps(prediction, observed, into: &$0) } == [])
        let teardown = found { Checks.teardown(prediction, observed, in: StubWorld(), into: &$0) }
        #expect(teardown.map(\.check) == [.teardown])
        #expect(teardown.map(\.section) == [.unmapOps])
        #expect(teardown.first?.expected == "unmap of handle(s) 20")
    }
}

@Suite struct UnmapBitmapCheckTests {
    let prediction = Prediction(unmapBitmaps: [ExpectedBitmap(vbd: 0, id: 7, bitmap: 0b101)])

    @Test func theBitmapOfTheOneOffsPasses() {
        let step = Publication.unmapping(vbd: 0, id: 7, nrSegments: 3, bitmap: 0b101)
        #expect(found { Checks.unmapBitmap(prediction, published: [step], into: &$0) } == [])
    }

    @Test func aWrongBitmapShowsBothSets() {
        let step = Publication.unmapping(vbd: 0, id: 7, nrSegments: 3, bitmap: 0b001)
        let findings = found { Checks.unmapBitmap(prediction, published: [step], into: &$0) }
        #expect(findings.map(\.check) == [.unmapBitmap])
        #expect(findings.first?.expected == "request 7 bitmap {0,2} (its one-off segments)")
        #expect(findings.first?.seen == "bitmap {0}")
    }

    @Test func aBitBeyondTheSegmentsIsWrongEvenUnpredicted() {
        let step = Publication.unmapping(vbd: 0, id: 8, nrSegments: 2, bitmap: 0b100)
        let nothing = Prediction()
        let findings = found { Checks.unmapBitmap(nothing, published: [step], into: &$0) }
        #expect(findings.map(\.expected) == ["no bit at or beyond nr_segments 2 (request 8)"])
    }

    @Test func aMissingStepIsReported() {
        let findings = found { Checks.unmapBitmap(prediction, published: [], into: &$0) }
        #expect(findings.map(\.seen) == ["no unmap step for it"])
    }
}

@Suite struct RequestLeakCheckTests {
    @Test func aOneOffLeftMappedAfterABatchIsALeak() {
        var memo = LeakCheckMemo()
        let model = connectionModel(tree: [1: 10])
        let prediction = Prediction(mappedAfter: ExpectedMappings(connections: [0: model]))
        var world = StubWorld()
        world.mappings = [mapping(handle: 10, gref: 1), mapping(handle: 11, gref: 2, readOnly: true)]
        let batch = mapBatch([(2, true)], handles: [11])
        let findings = found { Checks.requestLeak(prediction, observe([batch], world: world, for: prediction).environment, in: world, memo: &memo, into: &$0) }
        #expect(findings.map(\.check) == [.requestLeak])
        #expect(findings.first?.seen == "also mapped: gref 2 (handle 11)")

        world.mappings.removeLast()
        #expect(found { Checks.requestLeak(prediction, observe([batch], world: world, for: prediction).environment, in: world, memo: &memo, into: &$0) } == [])
    }

    @Test func withoutBatchesOrCompletionsMappingsAreNotReRead() {
        var memo = LeakCheckMemo()
        let prediction = Prediction(mappedAfter: ExpectedMappings(connections: [0: connectionModel()]))
        var world = StubWorld()
        world.mappings = [mapping(handle: 11, gref: 2)]
        #expect(found { Checks.requestLeak(prediction, observe(world: world, for: prediction).environment, in: world, memo: &memo, into: &$0) } == [])
        var completing = prediction
        completing.completesHeldIO = true
        #expect(found { Checks.requestLeak(completing, observe(world: world, for: completing).environment, in: world, memo: &memo, into: &$0) }
            .map(\.check) == [.requestLeak])
    }
}

/// After `request-leak` passes, a completion that changed nothing is not
/// looked at again; anything that could have changed what it looks at is.
@Suite final class RequestLeakMemoTests {
    let model = connectionModel(tree: [1: 10])
    var memo = LeakCheckMemo()
    var world = StubWorld()

    init() {
        world.mappings = [mapping(handle: 10, gref: 1)]
    }

    /// A completion of held I/O, judged against the model as it stands now.
    func completion(_ environment: [Observation] = [], model: ConnectionModel? = nil) -> [Finding] {
        var prediction = Prediction(completesHeldIO: true)
        let model = model ?? self.model
        prediction.mappedAfter = ExpectedMappings(connections: [0: model],
                                                  version: MappedHandlesVersion(connections: 0, mappings: model.mappedVersion))
        return found { Checks.requestLeak(prediction, observe(environment, world: world, for: prediction).environment, in: world,
                                   memo: &memo, into: &$0) }
    }

    @Test func aCompletionThatChangedNothingIsNotReRead() {
        #expect(completion() == [])
        // Swapping a mapping behind the log's back, count unchanged: only a
        // skipped check misses it (the world never does this; it shows the skip).
        world.mappings = [mapping(handle: 12, gref: 3)]
        #expect(completion() == [])
    }

    @Test func aBatchIsAlwaysLookedAt() {
        #expect(completion() == [])
        // The backend unmaps the persistent grant and maps another gref: same count, same expectation.
        world.mappings = [mapping(handle: 12, gref: 3)]
        let batches = [unmapBatch([(10, mapping(handle: 10, gref: 1))]), mapBatch([(3, false)], handles: [12])]
        #expect(completion(batches).map(\.seen) == ["also mapped: gref 3 (handle 12)"])
    }

    @Test func aChangedCountIsLookedAt() {
        #expect(completion() == [])
        world.mappings.append(mapping(handle: 11, gref: 2))
        #expect(completion().map(\.seen) == ["also mapped: gref 2 (handle 11)"])
    }

    @Test func aChangedExpectationIsLookedAt() {
        world.mappings.append(mapping(handle: 11, gref: 2, readOnly: true))
        let holding = connectionModel(tree: [1: 10])
        holding.hold(heldRead(oneOffs: [11]))
        #expect(completion(model: holding) == [])
        // The held request completes and its one-off stays mapped: nothing but the expectation moved.
        _ = holding.release(id: 7)
        #expect(completion(model: holding).map(\.seen) == ["also mapped: gref 2 (handle 11)"])
    }

    @Test func aFailureIsNeverRemembered() {
        world.mappings.append(mapping(handle: 11, gref: 2))
        #expect(completion().map(\.check) == [.requestLeak])
        #expect(completion().map(\.check) == [.requestLeak])
    }

    @Test func aPanicMakesTheOracleForget() {
        let oracle = ConformanceOracle()
        world.grant([1])
        world.connections[0] = ObservedConnection(persistentMode: true, persistentCount: 0, treeVersion: 0)
        world.trees[0] = ObservedTree(nodes: [], root: nil, brokenLinks: [])
        world.mappings = []
        let position = TracePosition.line(1, column: 1)
        func check(_ event: TraceEventKind, _ environment: [Observation] = [], _ publications: [Publication] = [])
            -> [Violation] {
            oracle.check(event, at: position, environment: environment, publications: publications, world: world)
        }
        _ = check(.connect(ConnectEvent(domid: 3, persistent: false)), [], [.negotiated(vbd: 0, persistent: false)])
        _ = check(requestEvent(id: 1, .read, grefs: [1], hold: true), [mapBatch([(1, false)], handles: [10])],
                  [])
        world.mappings = [mapping(handle: 10, gref: 1)]
        #expect(check(.complete(id: 9, vbd: 0)) == [])
        // A panicked event swaps a mapping (unjudged); the next completion must look again.
        _ = check(.complete(id: 9, vbd: 0), [.panic(message: "BUG")])
        world.mappings = [mapping(handle: 12, gref: 3)]
        #expect(check(.complete(id: 9, vbd: 0)).map(\.check).contains(.requestLeak))
    }
}

/// A held read of one segment whose one-off mappings are `oneOffs`.
func heldRead(id: UInt64 = 7, oneOffs: [GrantHandle]) -> PendingRequest {
    PendingRequest(vbd: 0, id: id, operation: BlkifOperation.read.rawValue, isWrite: false, sector: 0,
                   segments: [SegmentIO(firstSect: 0, lastSect: 7, page: GuestPage(2), tokens: SIMD8())],
                   oneOffHandles: oneOffs, bitmap: 1)
}
