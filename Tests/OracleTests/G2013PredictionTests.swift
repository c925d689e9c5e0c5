import Blkif
@testable import FakeXen
@testable import Oracle
import Testing
import Trace

/// The G2013 reference (docs/generations.md) step by step: the purge, the
/// map step's batches and lookups, allocation counting with the pool, and
/// the indirect parse.
@Suite struct G2013PurgeTests {
    /// A persistent connection whose tree holds `grefs`, gref n mapped as handle 100 + n.
    func connection(grefs: ClosedRange<GrantRef>) -> (ConnectionModel, G2013ConnectionState) {
        let grants = G2013ConnectionState()
        let model = ConnectionModel(domid: 3, ringProtocol: .native, persistentMode: true, limit: 0,
                                    sectors: 2_097_152, flush: true, discard: false, g2013: grants)
        for gref in grefs { model.addPersistentGrant(gref, handle: GrantHandle(100 + gref)) }
        return (model, grants)
    }

    @Test func cleanCountFollowsTheKernelFormula() {
        // (1056 / 100) * 5 = 50 past the limit, plus what is over it.
        #expect(G2013Purge.cleanCount(count: 1056, inUse: 0, limit: 1056, overflow: true) == 50)
        #expect(G2013Purge.cleanCount(count: 1060, inUse: 0, limit: 1056, overflow: false) == 54)
        #expect(G2013Purge.cleanCount(count: 1056, inUse: 0, limit: 1056, overflow: false) == nil)
        #expect(G2013Purge.cleanCount(count: 10, inUse: 0, limit: 11, overflow: true) == nil)
        // Fewer than 100: 5% is 0, so only what is over the limit goes.
        #expect(G2013Purge.cleanCount(count: 12, inUse: 0, limit: 10, overflow: false) == 2)
        #expect(G2013Purge.cleanCount(count: 10, inUse: 0, limit: 10, overflow: true) == nil)
        // More to clean than grants not in use: nothing.
        #expect(G2013Purge.cleanCount(count: 12, inUse: 11, limit: 10, overflow: false) == nil)
        // A limit of 0 takes everything.
        #expect(G2013Purge.cleanCount(count: 3, inUse: 0, limit: 0, overflow: false) == 3)
    }

    @Test func victimsSkipActiveThenWasActiveInAscendingGref() {
        let (model, grants) = connection(grefs: 1...100)
        grants.overflow = true
        grants.activate(1)
        for gref: GrantRef in [2, 4] {
            grants.activate(gref)
            grants.put(gref, at: 0)
        }
        #expect(G2013Purge.victims(model: model, grants: grants, limit: 100) == [3, 5, 6, 7, 8])
    }

    @Test func aSecondWalkTakesWasActiveGrantsWhenTooFewWereUnused() {
        let (model, grants) = connection(grefs: 1...12)
        for gref: GrantRef in 1...12 where gref != 7 {
            grants.activate(gref)
            grants.put(gref, at: 0)
        }
        grants.activate(2)
        // 12 over a limit of 9: 3 go; only 7 was unused, then 1 and 3 (2 is ACTIVE).
        #expect(G2013Purge.victims(model: model, grants: grants, limit: 9) == [7, 1, 3])
    }

    @Test func purgeUnmapsInReverseSelectionOrderInBatchesOfEleven() {
        let (model, grants) = connection(grefs: 1...20)
        let run = G2013Run()
        run.parameters.maxPersistentGrants = 8
        grants.activate(20)
        grants.activate(5)
        grants.put(5, at: 0)
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        G2013GrantSteps(model: model, grants: grants, run: run).purge(calls: &calls)
        // 12 victims: 1-4 and 6-19 but 5 (WAS_ACTIVE) and 20 (ACTIVE): 1, 2, 3, 4, 6 … 13.
        let chosen: [GrantRef] = [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13]
        let handles = chosen.reversed().map { GrantHandle(100 + $0) }
        #expect(calls.unmapBatches == [Array(handles[0..<11]), Array(handles[11...])])
        #expect(model.treeCount == 8)
        #expect(!grants.wasActiveSinceLastPurge(5))
        #expect(grants.isActive(20))
        #expect(!grants.overflow)
        #expect(grants.poolPages == 12)
    }

    @Test func theThreadLoopPurgesOnlyOnceItsTimeHasCome() {
        let (model, grants) = connection(grefs: 1...3)
        let run = G2013Run()
        run.parameters.maxPersistentGrants = 2
        let steps = G2013GrantSteps(model: model, grants: grants, run: run)
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        steps.runThreadLoop(calls: &calls)
        #expect(calls.unmapBatches.isEmpty, "jiffies 0 is not after next_lru 0")
        run.jiffies = 1
        steps.runThreadLoop(calls: &calls)
        #expect(calls.unmapBatches == [[101]])
        #expect(grants.nextLRU == 101)
        run.parameters.maxPersistentGrants = 1
        run.jiffies = 101
        steps.runThreadLoop(calls: &calls)
        #expect(calls.unmapBatches == [[101]], "not after next_lru yet")
        run.jiffies = 102
        run.parameters.maxBufferPages = 0
        steps.runThreadLoop(calls: &calls)
        #expect(calls.unmapBatches == [[101], [102]])
        #expect(grants.poolPages == 0, "shrunk to max_buffer_pages")
    }
}

@Suite struct G2013MapStepTests {
    func steps(persistent: Bool = true, tree: [GrantRef] = [], run: G2013Run = G2013Run())
        -> G2013GrantSteps {
        let grants = G2013ConnectionState()
        let model = ConnectionModel(domid: 3, ringProtocol: .native, persistentMode: persistent, limit: 0,
                                    sectors: 2_097_152, flush: true, discard: false, g2013: grants)
        for gref in tree { model.addPersistentGrant(gref, handle: GrantHandle(100 + gref)) }
        return G2013GrantSteps(model: model, grants: grants, run: run)
    }

    /// The hypervisor's answers: each batch's ops all mapped, handles counting up from `first`.
    func answers(_ sizes: [Int], first: GrantHandle = 0) -> EnvironmentRecord {
        var next = first
        return EnvironmentRecord(sizes.map { size in
            defer { next += GrantHandle(size) }
            return mapBatch((0..<size).map { _ in (0, false) }, handles: (0..<size).map { next + GrantHandle($0) })
        })
    }

    @Test func newMapsGoInBatchesOfElevenAndHitsDoNotCount() {
        let steps = steps(tree: [5])
        var calls = G2013Hypercalls(environment: answers([11, 2]))
        var statistics = OracleStatistics()
        let mapped = steps.map(Array(1...14), readOnly: true, calls: &calls, statistics: &statistics)
        #expect(!mapped.failed)
        let firstBatch: [GrantRef] = [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
        #expect(calls.mapBatches == [firstBatch.map { ExpectedMapOp(gref: $0, readOnly: false) },
                                     [13, 14].map { ExpectedMapOp(gref: $0, readOnly: false) }])
        #expect(mapped.entries[4] == .persistent(5))
        #expect(mapped.entries[0] == .persistent(1))
        #expect(steps.model.treeCount == 14)
        #expect(statistics.persistentHits == 1 && statistics.newPersistent == 13)
    }

    @Test func outsidePersistentModeWritesMapReadOnly() {
        let steps = steps(persistent: false)
        var calls = G2013Hypercalls(environment: answers([2]))
        var statistics = OracleStatistics()
        let mapped = steps.map([1, 2], readOnly: true, calls: &calls, statistics: &statistics)
        #expect(calls.mapBatches == [[ExpectedMapOp(gref: 1, readOnly: true), ExpectedMapOp(gref: 2, readOnly: true)]])
        #expect(mapped.entries == [.oneOff(0), .oneOff(1)])
    }

    @Test func aGrantAlreadyActiveIsMappedAgainAsAOneOff() {
        let steps = steps(tree: [5])
        steps.grants.activate(5)
        var calls = G2013Hypercalls(environment: answers([1], first: 7))
        var statistics = OracleStatistics()
        let mapped = steps.map([5], readOnly: false, calls: &calls, statistics: &statistics)
        #expect(calls.mapBatches == [[ExpectedMapOp(gref: 5, readOnly: false)]])
        // Already in the tree: it cannot be added, and stays a one-off.
        #expect(mapped.entries == [.oneOff(7)])
        #expect(steps.model.persistentHandle(of: 5) == 105)
    }

    @Test func aFailedBatchStopsTheStep() {
        let steps = steps(persistent: false)
        let failing = Observation.mapBatch(MapBatch(
            ops: [], results: [MapResult(status: .okay, handle: 0)] + Array(repeating: MapResult(status: .badGntref, handle: 0), count: 10)))
        var calls = G2013Hypercalls(environment: EnvironmentRecord([failing]))
        var statistics = OracleStatistics()
        let mapped = steps.map(Array(1...13), readOnly: false, calls: &calls, statistics: &statistics)
        #expect(mapped.failed)
        #expect(calls.mapBatches.count == 1)
        #expect(mapped.entries.first == .oneOff(0))
        #expect(mapped.entries.dropFirst().allSatisfy { $0 == .none })
        // The failed maps' pages went back to the pool; the unmap step
        // unmaps the one that mapped, and its page goes back too.
        steps.unmap(mapped.entries, calls: &calls)
        #expect(calls.unmapBatches == [[0]])
        #expect(steps.grants.poolPages == 11)
    }

    @Test func theLimitIsReadWhenAGrantIsAddedAndSetsOverflow() {
        let run = G2013Run()
        run.parameters.maxPersistentGrants = 1
        let steps = steps(run: run)
        var calls = G2013Hypercalls(environment: answers([2]))
        var statistics = OracleStatistics()
        let mapped = steps.map([1, 2], readOnly: false, calls: &calls, statistics: &statistics)
        #expect(mapped.entries == [.persistent(1), .oneOff(1)])
        #expect(steps.grants.overflow)
    }

    @Test func anAllocationIsCountedOnlyWhenThePoolIsEmpty() {
        let run = G2013Run()
        let steps = steps(persistent: false, run: run)
        var statistics = OracleStatistics()
        // Two pages allocated, and back on the pool after the unmap step.
        var calls = G2013Hypercalls(environment: answers([2]))
        steps.unmap(steps.map([1, 2], readOnly: false, calls: &calls, statistics: &statistics).entries, calls: &calls)
        #expect(steps.grants.poolPages == 2)
        // The next allocation fails: the third map, past the pool's two pages.
        run.allocationFaults.arm(nth: 1)
        calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        let mapped = steps.map([3, 4, 5], readOnly: false, calls: &calls, statistics: &statistics)
        #expect(mapped.failed)
        #expect(calls.mapBatches.isEmpty, "ENOMEM: no hypercall for the batch")
        #expect(steps.grants.poolPages == 2, "the batch's pages went back")
    }

    @Test func aRecordIsAllocatedAfterItsMapAndItsFailureLeavesAOneOff() {
        let run = G2013Run()
        let steps = steps(run: run)
        var statistics = OracleStatistics()
        // Allocation 1 is the page, 2 the record.
        run.allocationFaults.arm(nth: 2)
        var calls = G2013Hypercalls(environment: answers([1]))
        let mapped = steps.map([1], readOnly: false, calls: &calls, statistics: &statistics)
        #expect(!mapped.failed)
        #expect(mapped.entries == [.oneOff(0)])
        #expect(steps.model.treeCount == 0)
    }

    @Test func enomemKeepsTheBatchHitsForTheUnmapStep() {
        let run = G2013Run()
        let steps = steps(tree: [1], run: run)
        run.allocationFaults.arm(nth: 1)
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        var statistics = OracleStatistics()
        let mapped = steps.map([1, 2], readOnly: false, calls: &calls, statistics: &statistics)
        #expect(mapped.failed)
        #expect(mapped.entries == [.persistent(1), .none])
        steps.unmap(mapped.entries, calls: &calls)
        #expect(!steps.grants.isActive(1) && steps.grants.wasActiveSinceLastPurge(1))
    }
}

@Suite struct G2013IndirectTests {
    let page = GuestPage(9)

    func descriptorBytes(_ segments: [BlkifSegment]) -> [UInt8] { segments.flatMap(\.descriptorBytes) }

    func read(_ offset: Int, _ count: Int) -> Observation {
        .guestRead(GuestByteRead(domid: 3, gref: 9, page: page, offset: offset, count: count))
    }

    @Test func eachByteIsTakenAsItWasFirstRead() {
        let before = descriptorBytes([BlkifSegment(gref: 3, firstSect: 0, lastSect: 7)])
        let landed = Observation.armedWriteLanded(ArmedWrite(page: page, offset: 5, bytes: [9], readsLeft: 1))
        // The write lands after last_sect was read: the backend saw 7.
        let afterRead = IndirectDescriptors.read(count: 1, from: page, before: before,
                                                 observations: [read(0, 4), read(4, 1), read(5, 1), landed])
        #expect(afterRead == [BlkifSegment(gref: 3, firstSect: 0, lastSect: 7)])
        // It lands before last_sect is read: the backend saw 9.
        let beforeRead = IndirectDescriptors.read(count: 1, from: page, before: before,
                                                  observations: [read(0, 4), read(4, 1), landed, read(5, 1)])
        #expect(beforeRead == [BlkifSegment(gref: 3, firstSect: 0, lastSect: 9)])
    }

    @Test func anIndirectRequestMapsItsPageThenItsSegments() {
        let reference = ReferenceModel(generation: .g2013)
        var world = StubWorld()
        world.grant([3, 4, 9])
        _ = reference.predict(.connect(ConnectEvent(domid: 3, persistent: false)), environment: EnvironmentRecord([]),
                              world: world)
        let indirect = IndirectRequestEvent(id: 1, operation: BlkifOperation.read.rawValue, sector: 0,
                                            segments: [segment(3), segment(4)], pages: [9])
        // Handle 0 maps the page, is unmapped, and is handed out again.
        let prediction = reference.predict(
            .indirect(indirect),
            environment: EnvironmentRecord([mapBatch([(9, true)], handles: [0]), read(0, 8), read(8, 8),
                                            mapBatch([(3, false), (4, false)], handles: [0, 1])]),
            world: world)
        #expect(prediction.mapOps == .batches(domid: 3, [[ExpectedMapOp(gref: 9, readOnly: true)],
                                                         [ExpectedMapOp(gref: 3, readOnly: false),
                                                          ExpectedMapOp(gref: 4, readOnly: false)]]))
        #expect(prediction.unmapBatchOrder == [[0], [0, 1]])
        #expect(prediction.responses == [ExpectedResponse(vbd: 0, id: 1, status: .okay, operation: .read)])
    }

    @Test func aBadDescriptorFailsTheRequestAfterItsPageIsUnmapped() {
        let reference = ReferenceModel(generation: .g2013)
        var world = StubWorld()
        world.grant([3, 9])
        _ = reference.predict(.connect(ConnectEvent(domid: 3, persistent: true)), environment: EnvironmentRecord([]),
                              world: world)
        let indirect = IndirectRequestEvent(id: 2, operation: BlkifOperation.write.rawValue, sector: 0,
                                            segments: [BlkifSegment(gref: 3, firstSect: 4, lastSect: 2)], pages: [9])
        let prediction = reference.predict(.indirect(indirect),
                                           environment: EnvironmentRecord([mapBatch([(9, false)], handles: [0])]),
                                           world: world)
        #expect(prediction.mapOps == .batches(domid: 3, [[ExpectedMapOp(gref: 9, readOnly: false)]]))
        // In persistent mode the page became a persistent grant, put again.
        #expect(prediction.unmapBatchOrder == [])
        #expect(prediction.tree?.grants.dictionary == [9: 0])
        #expect(prediction.responses == [ExpectedResponse(vbd: 0, id: 2, status: .error, operation: .write)])
    }

    @Test func anIndirectOperationOtherThanReadOrWriteIsAnErrorWithThatOperation() {
        let reference = ReferenceModel(generation: .g2013)
        var world = StubWorld()
        world.grant([9])
        _ = reference.predict(.connect(ConnectEvent(domid: 3)), environment: EnvironmentRecord([]), world: world)
        let indirect = IndirectRequestEvent(id: 3, operation: BlkifOperation.flushDiskcache.rawValue, sector: 0,
                                            segments: [segment(9)], pages: [9])
        let prediction = reference.predict(.indirect(indirect), environment: EnvironmentRecord([]), world: world)
        #expect(prediction.mapOps == .batches(domid: 3, []))
        #expect(prediction.responses == [ExpectedResponse(vbd: 0, id: 3, status: .error, operation: .flushDiskcache)])
    }
}

@Suite struct DoubleFetchCheckTests {
    func read(_ page: UInt64, _ offset: Int, _ count: Int) -> Observation {
        .guestRead(GuestByteRead(domid: 3, gref: 9, page: GuestPage(page), offset: offset, count: count))
    }

    @Test func eachByteReadOnceIsFine() {
        let record = EnvironmentRecord([read(9, 0, 4), read(9, 4, 1), read(9, 5, 1), read(10, 0, 6)])
        #expect(found { Checks.doubleFetch(record, into: &$0) }.isEmpty)
    }

    @Test func aByteReadTwiceIsReportedOncePerPageAtTheSecondRead() {
        let record = EnvironmentRecord([read(9, 0, 6), read(9, 4, 2), read(9, 5, 1)])
        let findings = found { Checks.doubleFetch(record, into: &$0) }
        #expect(findings.map(\.check) == [.doubleFetch])
        #expect(findings.first?.section == .environment(at: 1))
        #expect(findings.first?.seen.hasPrefix("bytes 4-5 of guest page 9") == true)
    }
}

@Suite struct G2013UnmapOrderTests {
    @Test func aHandleUnmappedTwiceInOneEventIsExpectedTwice() {
        let order: [[GrantHandle]] = [[0], [0, 1]]
        let batches = [UnmapBatch(ops: [UnmapOp(hostPage: PageFrame(0), handle: 0)],
                                  results: [UnmapResult(status: .okay, unmapped: mapping(handle: 0, gref: 9))]),
                       UnmapBatch(ops: [UnmapOp(hostPage: PageFrame(0), handle: 0), UnmapOp(hostPage: PageFrame(0), handle: 1)],
                                  results: [UnmapResult(status: .okay, unmapped: mapping(handle: 0, gref: 3)),
                                            UnmapResult(status: .okay, unmapped: mapping(handle: 1, gref: 4))])]
        let ledger = UnmapLedger(expectedInOrder: order, batches: batches)
        #expect(!ledger.hasSurprises)
        #expect(ledger.missing.isEmpty)
    }

    @Test func theSameHandlesInOtherBatchesAreAnUnmapOpsViolation() {
        var prediction = Prediction()
        prediction.unmaps = [1, 2]
        prediction.unmapBatchOrder = [[2, 1]]
        let observed = observe([unmapBatch([(1, mapping(handle: 1, gref: 1)), (2, mapping(handle: 2, gref: 2))])],
                               for: prediction)
        let findings = found { Checks.unmapOps(prediction, observed, into: &$0) }
        #expect(findings.map(\.check) == [.unmapOps])
        #expect(findings.first?.expected == "unmap hypercalls [2 1]")
    }
}

@Suite struct GrantStatesCheckTests {
    let reference = ReferenceModel(generation: .g2013)
    var world = StubWorld()

    init() {
        world.grant([1, 2])
        world.connections[0] = ObservedConnection(persistentMode: true, persistentCount: 1, treeVersion: 1)
        _ = reference.predict(.connect(ConnectEvent(domid: 3, persistent: true)), environment: EnvironmentRecord([]),
                              world: world)
    }

    func tree(_ flags: ObservedGrantFlags?) -> ObservedTree {
        ObservedTree(nodes: [ObservedNode(gref: 1, isRed: false, handle: 0, left: nil, right: nil, flags: flags)],
                     root: 0, brokenLinks: [])
    }

    @Test func aHeldRequestsGrantIsActiveAndPutOnceItCompletes() {
        var world = world
        let held = reference.predict(requestEvent(id: 1, .read, grefs: [1], hold: true),
                                     environment: EnvironmentRecord([mapBatch([(1, false)], handles: [0])]), world: world)
        #expect(held.grantStates == [0])
        world.trees[0] = tree(ObservedGrantFlags(active: true, wasActive: false))
        #expect(found { Checks.grantStates(held, reference: reference, in: world, into: &$0) }.isEmpty)
        world.trees[0] = tree(ObservedGrantFlags(active: false, wasActive: true))
        let early = found { Checks.grantStates(held, reference: reference, in: world, into: &$0) }
        #expect(early.map(\.check) == [.grantStates])
        #expect(early.first?.seen == "gref 1: WAS_ACTIVE, expected ACTIVE")

        let completed = reference.predict(.complete(id: 1, vbd: 0), environment: EnvironmentRecord([]), world: world)
        #expect(completed.grantStates == [0])
        #expect(found { Checks.grantStates(completed, reference: reference, in: world, into: &$0) }.isEmpty)
    }

    @Test func flagsNotPublishedAreNotJudged() {
        var world = world
        let held = reference.predict(requestEvent(id: 1, .read, grefs: [1], hold: true),
                                     environment: EnvironmentRecord([mapBatch([(1, false)], handles: [0])]), world: world)
        world.trees[0] = tree(nil)
        #expect(found { Checks.grantStates(held, reference: reference, in: world, into: &$0) }.isEmpty)
    }
}
