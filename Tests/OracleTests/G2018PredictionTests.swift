import Blkif
@testable import FakeXen
@testable import Oracle
import Testing
import Trace

/// A G2018 connection's steps with `grefs` in its tree (gref n mapped as
/// handle 100 + n), none of them in use yet, on a fresh G2018 run.
private func g2018Steps(persistent: Bool = true, tree grefs: [GrantRef] = [],
                        run: G2013Run = G2013Run(generation: .g2018)) -> G2013GrantSteps {
    let grants = G2013ConnectionState(tracksWasActive: false)
    let model = ConnectionModel(domid: 3, ringProtocol: .native, persistentMode: persistent, limit: 0,
                                sectors: 2_097_152, flush: true, discard: false, g2013: grants)
    for gref in grefs { model.addPersistentGrant(gref, handle: GrantHandle(100 + gref)) }
    return G2013GrantSteps(model: model, grants: grants, run: run)
}

/// Each of `grefs` used by a request and put at `jiffies`.
private func use(_ grefs: [GrantRef], at jiffies: UInt64, in grants: G2013ConnectionState) {
    for gref in grefs {
        grants.activate(gref)
        grants.put(gref, at: jiffies)
    }
}

/// docs/generations.md, G2018 "Purge": grants go by idle time first.
@Suite struct G2018PurgeTests {
    @Test func cleanCountHasNoBailOutAndIsZeroBelowTheLimit() {
        #expect(G2018Purge.cleanCount(count: 1056, limit: 1056, overflow: true) == 50)
        #expect(G2018Purge.cleanCount(count: 1060, limit: 1056, overflow: false) == 54)
        #expect(G2018Purge.cleanCount(count: 1056, limit: 1056, overflow: false) == 0)
        #expect(G2018Purge.cleanCount(count: 10, limit: 11, overflow: true) == 0)
        #expect(G2018Purge.cleanCount(count: 12, limit: 10, overflow: false) == 2)
        // G2013 gives up when more must go than are unused; G2018 asks anyway.
        #expect(G2013Purge.cleanCount(count: 12, inUse: 11, limit: 10, overflow: false) == nil)
        #expect(G2018Purge.cleanCount(count: 3, limit: 0, overflow: false) == 3)
    }

    @Test func aGrantTimesOutAfterExactlyThatManySecondsUnlessTheParameterIsZero() {
        #expect(G2018Purge.isTimedOut(lastUsed: 1000, jiffies: 61_000, unusedSeconds: 60))
        #expect(!G2018Purge.isTimedOut(lastUsed: 1000, jiffies: 60_999, unusedSeconds: 60))
        #expect(!G2018Purge.isTimedOut(lastUsed: 0, jiffies: .max, unusedSeconds: 0), "0: never")
        #expect(G2018Purge.isTimedOut(lastUsed: 5, jiffies: 1005, unusedSeconds: 1))
    }

    @Test func theFirstWalkTakesEveryTimedOutGrantEvenBelowTheLimit() {
        let steps = g2018Steps(tree: Array(1...10))
        use(Array(1...10), at: 0, in: steps.grants)
        use([3, 4], at: 50_000, in: steps.grants)
        steps.grants.activate(9)
        // 10 grants, limit 1056: num_clean is 0, yet the seven idle since 0 all go.
        let victims = G2018Purge.victims(model: steps.model, grants: steps.grants, limit: 1056, jiffies: 60_000,
                                         unusedSeconds: 60)
        #expect(victims == [1, 2, 5, 6, 7, 8, 10])
    }

    @Test func theFirstWalkIsNotCappedAtTheCleanCount() {
        let steps = g2018Steps(tree: Array(1...12))
        use(Array(1...12), at: 0, in: steps.grants)
        // 12 over a limit of 10: 2 must go, but all 12 timed out.
        let victims = G2018Purge.victims(model: steps.model, grants: steps.grants, limit: 10, jiffies: 60_000,
                                         unusedSeconds: 60)
        #expect(victims == Array(1...12))
    }

    @Test func aSecondWalkTopsUpWithIdleGrantsOfAnyAge() {
        let steps = g2018Steps(tree: Array(1...12))
        use(Array(1...12), at: 30_000, in: steps.grants)
        use([7], at: 0, in: steps.grants)
        steps.grants.activate(2)
        // 12 over a limit of 9: 3 go; only 7 timed out, then 1 and 3 (2 is active, 7 taken).
        let victims = G2018Purge.victims(model: steps.model, grants: steps.grants, limit: 9, jiffies: 60_000,
                                         unusedSeconds: 60)
        #expect(victims == [7, 1, 3])
    }

    @Test func theSecondWalkCannotTakeActiveGrants() {
        let steps = g2018Steps(tree: Array(1...12))
        use(Array(1...12), at: 30_000, in: steps.grants)
        for gref: GrantRef in 1...11 { steps.grants.activate(gref) }
        // 3 should go, but only 12 is idle: it goes alone.
        let victims = G2018Purge.victims(model: steps.model, grants: steps.grants, limit: 9, jiffies: 60_000,
                                         unusedSeconds: 60)
        #expect(victims == [12])
    }

    @Test func purgeUnmapsInReverseChoiceOrderAndLeavesTheRestAlone() {
        let run = G2013Run(generation: .g2018)
        run.parameters.maxPersistentGrants = 8
        run.jiffies = 60_000
        let steps = g2018Steps(tree: Array(1...20), run: run)
        use(Array(1...20), at: 10_000, in: steps.grants)
        use([15], at: 0, in: steps.grants)
        steps.grants.activate(1)
        steps.grants.overflow = true
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        steps.purge(calls: &calls)
        // 20 over 8: 12 go. 15 timed out; then 2 … 13 (1 is active), skipping 15.
        let chosen: [GrantRef] = [15, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        let handles = chosen.reversed().map { GrantHandle(100 + $0) }
        #expect(calls.unmapBatches == [Array(handles[0..<11]), Array(handles[11...])])
        #expect(steps.model.tree.ascendingGrefs == [1, 13, 14, 16, 17, 18, 19, 20])
        #expect(!steps.grants.overflow)
        #expect(steps.grants.isActive(1))
        #expect(steps.grants.lastUse(of: 13) == 10_000, "grants left in the tree are not changed")
        #expect(steps.grants.poolPages == 12)
    }

    @Test func overflowStaysWhenNothingIsPurged() {
        let run = G2013Run(generation: .g2018)
        run.parameters.maxPersistentGrants = 3
        run.jiffies = 60_000
        let steps = g2018Steps(tree: [1, 2, 3], run: run)
        use([1, 2, 3], at: 59_000, in: steps.grants)
        steps.grants.overflow = true
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        // At the limit with overflow, but (3 / 100) × 5 + 0 = 0 to clean and none timed out.
        steps.purge(calls: &calls)
        #expect(calls.unmapBatches.isEmpty)
        #expect(steps.grants.overflow)
        run.jiffies = 119_000
        steps.purge(calls: &calls)
        #expect(calls.unmapBatches == [[103, 102, 101]])
        #expect(!steps.grants.overflow, "cleared once something went")
    }

    @Test func theUnusedSecondsParameterIsReadAtThePurge() {
        let run = G2013Run(generation: .g2018)
        run.jiffies = 200_000
        let steps = g2018Steps(tree: [1], run: run)
        use([1], at: 0, in: steps.grants)
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        run.parameters.persistentGrantUnusedSeconds = 0
        steps.purge(calls: &calls)
        #expect(calls.unmapBatches.isEmpty, "0: grants never time out")
        run.parameters.persistentGrantUnusedSeconds = 200
        steps.purge(calls: &calls)
        #expect(calls.unmapBatches == [[101]])
    }
}

/// docs/generations.md, G2018 "State and helpers" and "Unmapping".
@Suite struct G2018UnmapTests {
    @Test func aPutSetsLastUsedAndNeverWasActive() {
        let run = G2013Run(generation: .g2018)
        let steps = g2018Steps(tree: [1, 2], run: run)
        steps.grants.activate(1)
        steps.grants.activate(2)
        run.jiffies = 1234
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        steps.unmapAtCompletion([.persistent(1)], calls: &calls)
        run.jiffies = 5678
        steps.unmap([.persistent(2)], calls: &calls)
        #expect(steps.grants.lastUse(of: 1) == 1234)
        #expect(steps.grants.lastUse(of: 2) == 5678)
        #expect(!steps.grants.isActive(1) && !steps.grants.isActive(2))
        #expect(!steps.grants.wasActiveSinceLastPurge(1) && !steps.grants.wasActiveSinceLastPurge(2))
        #expect(calls.unmapBatches.isEmpty, "persistent grants are put, not unmapped")
    }

    @Test func anAddedGrantHasNoLastUseUntilItsFirstPut() {
        let steps = g2018Steps()
        var calls = G2013Hypercalls(environment: EnvironmentRecord([mapBatch([(4, false)], handles: [9])]))
        var statistics = OracleStatistics()
        let mapped = steps.map([4], readOnly: false, calls: &calls, statistics: &statistics)
        #expect(mapped.entries == [.persistent(4)])
        #expect(steps.grants.isActive(4))
        #expect(steps.grants.lastUse(of: 4) == nil)
    }

    @Test func completionUnmapsEveryOneOffInOneHypercall() {
        let steps = g2018Steps(persistent: false)
        let entries = (0..<20).map { G2013Entry.oneOff(GrantHandle($0)) }
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        steps.unmapAtCompletion(entries, calls: &calls)
        #expect(calls.unmapBatches == [(0..<20).map { GrantHandle($0) }])
        #expect(steps.grants.poolPages == 20)
    }

    @Test func completionWithNothingToUnmapIssuesNoHypercall() {
        let steps = g2018Steps(tree: [1])
        steps.grants.activate(1)
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        steps.unmapAtCompletion([.persistent(1), .none], calls: &calls)
        #expect(calls.unmapBatches.isEmpty)
    }

    @Test func errorPathsUnmapInChunksOfElevenEntries() {
        // One-offs at entries 0, 11 and 12, and none in entries 13…23.
        var entries = [G2013Entry](repeating: .none, count: 24)
        entries[0] = .oneOff(50)
        entries[11] = .oneOff(51)
        entries[12] = .oneOff(52)
        var calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        g2018Steps(persistent: false).unmap(entries, calls: &calls)
        #expect(calls.unmapBatches == [[50], [51, 52]], "entries 0..<11, 11..<22; 22..<24 queued nothing")
        // G2013 flushes every 11 queued operations instead: one hypercall.
        let g2013 = G2013GrantSteps(model: connectionModel(persistent: false), grants: G2013ConnectionState(),
                                    run: G2013Run())
        var g2013Calls = G2013Hypercalls(environment: EnvironmentRecord([]))
        g2013.unmap(entries, calls: &g2013Calls)
        #expect(g2013Calls.unmapBatches == [[50, 51, 52]])
    }

    @Test func anIndirectRequestsOneOffsAreUnmappedByOneHypercallOfUpTo256() {
        let reference = ReferenceModel(generation: .g2018)
        var world = StubWorld()
        world.grant(Array(1...20) + [900])
        _ = reference.predict(.connect(ConnectEvent(domid: 3, persistent: false)), environment: EnvironmentRecord([]),
                              world: world)
        let indirect = IndirectRequestEvent(id: 1, operation: BlkifOperation.read.rawValue, sector: 0,
                                            segments: (1...20).map(segment), pages: [900])
        let reads = (0..<20).flatMap { index -> [Observation] in
            [Observation.guestRead(GuestByteRead(domid: 3, gref: 900, page: GuestPage(900), offset: index * 8, count: 8))]
        }
        let dataHandles = (1...20).map { GrantHandle($0) }
        let prediction = reference.predict(
            .indirect(indirect),
            environment: EnvironmentRecord([mapBatch([(900, true)], handles: [0])] + reads
                                           + [mapBatch((1...11).map { ($0, false) }, handles: Array(dataHandles[0..<11])),
                                              mapBatch((12...20).map { ($0, false) }, handles: Array(dataHandles[11...]))]),
            world: world)
        // The page through the error-path step, the data at completion.
        #expect(prediction.unmapBatchOrder == [[0], dataHandles])
        #expect(reference.unmapBatchLimit == 256)
        #expect(prediction.responses == [ExpectedResponse(vbd: 0, id: 1, status: .okay, operation: .read)])
    }

    @Test func theUnmapCheckTakesG2018sLargerHypercallButG2013HoldsItToEleven() {
        let handles = (1...12).map { GrantHandle($0) }
        let batch = unmapBatch(handles.map { ($0, mapping(handle: $0, gref: GrantRef($0))) })
        var prediction = Prediction()
        prediction.unmaps = Set(handles)
        prediction.unmapBatchOrder = [handles]
        #expect(found { Checks.unmapOps(prediction, observe([batch], for: prediction),
                                        batchLimit: ReferenceModel(generation: .g2018).unmapBatchLimit, into: &$0) }.isEmpty)
        let g2013Limit = ReferenceModel(generation: .g2013).unmapBatchLimit
        let findings = found { Checks.unmapOps(prediction, observe([batch], for: prediction), batchLimit: g2013Limit,
                                               into: &$0) }
        #expect(findings.map(\.expected) == ["unmap batches of at most 11"])
    }
}

/// docs/generations.md, G2018 "Negotiation", today's form.
@Suite struct G2018NegotiationTests {
    /// The negotiation a first connect predicts after `events`, with the
    /// frontend's key `frontend` (nil: never written).
    func negotiation(frontend: String?, backendPersistent: Bool = true, before events: [TraceEventKind] = [],
                     hotplugAfter: Bool = false, generation: OracleGeneration = .g2018) -> ExpectedNegotiation? {
        let reference = ReferenceModel(generation: generation)
        let world = StubWorld()
        for event in events { _ = reference.predict(event, environment: EnvironmentRecord([]), world: world) }
        if let frontend {
            _ = reference.predict(.frontendKey(name: "feature-persistent", value: frontend),
                                  environment: EnvironmentRecord([]), world: world)
        }
        let connect = ConnectEvent(domid: 3, backendPersistent: backendPersistent, hotplugAfterConnect: hotplugAfter)
        return reference.predict(.connect(connect), environment: EnvironmentRecord([]), world: world).negotiation
    }

    @Test func anyNonZeroFrontendValueTurnsPersistentGrantsOn() {
        for value in ["1", "2", "3", "01", " 7", "1x"] {
            let expected = negotiation(frontend: value)
            #expect(expected?.persistent == true, "frontend \(value)")
            #expect(expected?.advertised == "1")
        }
        // G2012's rule, kept by G2013: only 1 counts.
        #expect(negotiation(frontend: "2", generation: .g2013)?.persistent == false)
    }

    @Test func zeroAbsentOrUnreadableIsOff() {
        for value: String? in ["0", nil, "x", "-1", "0x1", ""] {
            let expected = negotiation(frontend: value)
            #expect(expected?.persistent == false, "frontend \(value ?? "absent")")
            #expect(expected?.advertised == "1", "the backend still offers them")
        }
    }

    @Test func theParameterOffTurnsItOffAndIsAdvertisedAsZero() {
        let off = negotiation(frontend: "1", before: [.parameter(.featurePersistent, value: 0)])
        #expect(off?.persistent == false)
        #expect(off?.backendOffers == false)
        #expect(off?.advertised == "0")
        let backOn = negotiation(frontend: "1", before: [.parameter(.featurePersistent, value: 0),
                                                         .parameter(.featurePersistent, value: 1)])
        #expect(backOn?.persistent == true)
    }

    @Test func theConnectsBackendPersistentOffIsAdvertisedAsZero() {
        let off = negotiation(frontend: "1", backendPersistent: false)
        #expect(off?.persistent == false)
        #expect(off?.advertised == "0")
        // G2013 writes no key when it does not offer them.
        #expect(negotiation(frontend: "1", backendPersistent: false, generation: .g2013)?.advertised == nil)
    }

    @Test func theHotplugOrderChangesNothingInTodaysForm() {
        #expect(negotiation(frontend: "2", hotplugAfter: true)?.persistent == true)
        #expect(negotiation(frontend: "0", hotplugAfter: true)?.persistent == false)
    }

    @Test func theNegotiationCheckHoldsTheAdvertisementToTheParameter() {
        guard let expected = negotiation(frontend: "1", before: [.parameter(.featurePersistent, value: 0)]) else {
            Issue.record("a connect negotiates")
            return
        }
        var prediction = Prediction()
        prediction.negotiation = expected
        var world = StubWorld()
        let publications: [Publication] = [.negotiated(vbd: 0, persistent: false)]
        world.backendKeys[0] = ["feature-persistent": "0"]
        #expect(found { Checks.negotiation(prediction, observe(world: world, for: prediction), published: publications,
                                           in: world, into: &$0) }.isEmpty)
        world.backendKeys[0] = nil
        let absent = found { Checks.negotiation(prediction, observe(world: world, for: prediction),
                                                published: publications, in: world, into: &$0) }
        #expect(absent.map(\.seen) == ["absent"])
    }
}

/// docs/generations.md, G2018 "State and helpers": the published flags.
@Suite struct G2018GrantStatesTests {
    @Test func aCompletedRequestsGrantIsIdleWithoutWasActive() {
        let reference = ReferenceModel(generation: .g2018)
        var world = StubWorld()
        world.grant([1])
        world.connections[0] = ObservedConnection(persistentMode: true, persistentCount: 1, treeVersion: 1)
        _ = reference.predict(.connect(ConnectEvent(domid: 3, persistent: true)), environment: EnvironmentRecord([]),
                              world: world)
        _ = reference.predict(requestEvent(id: 1, .read, grefs: [1], hold: true),
                              environment: EnvironmentRecord([mapBatch([(1, false)], handles: [0])]), world: world)
        let completed = reference.predict(.complete(id: 1, vbd: 0), environment: EnvironmentRecord([]), world: world)
        #expect(completed.grantStates == [0])
        func tree(_ flags: ObservedGrantFlags) -> ObservedTree {
            ObservedTree(nodes: [ObservedNode(gref: 1, isRed: false, handle: 0, left: nil, right: nil, flags: flags)],
                         root: 0, brokenLinks: [])
        }
        world.trees[0] = tree(ObservedGrantFlags(active: false, wasActive: false))
        #expect(found { Checks.grantStates(completed, reference: reference, in: world, into: &$0) }.isEmpty)
        world.trees[0] = tree(ObservedGrantFlags(active: false, wasActive: true))
        let findings = found { Checks.grantStates(completed, reference: reference, in: world, into: &$0) }
        #expect(findings.first?.seen == "gref 1: WAS_ACTIVE, expected no flag")
    }

    @Test func aGrantIdleLongerThanTheParameterIsPurgedAtATick() {
        let reference = ReferenceModel(generation: .g2018)
        var world = StubWorld()
        world.grant([1])
        _ = reference.predict(.connect(ConnectEvent(domid: 3, persistent: true)), environment: EnvironmentRecord([]),
                              world: world)
        _ = reference.predict(requestEvent(id: 1, .read, grefs: [1]),
                              environment: EnvironmentRecord([mapBatch([(1, false)], handles: [7])]), world: world)
        let early = reference.predict(.tick(milliseconds: 59_999), environment: EnvironmentRecord([]), world: world)
        #expect(early.unmapBatchOrder == [])
        // The purge ran at 59 999 and next runs after 60 099 (next_lru).
        let notYet = reference.predict(.tick(milliseconds: 100), environment: EnvironmentRecord([]), world: world)
        #expect(notYet.unmapBatchOrder == [])
        let due = reference.predict(.tick(milliseconds: 1), environment: EnvironmentRecord([]), world: world)
        #expect(due.unmapBatchOrder == [[7]])
        #expect(due.tree?.grants.dictionary == [:])
    }
}
