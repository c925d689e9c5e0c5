import Testing
import Blkif
import FakeXen
import Backend

/// What a scenario can show of a quirk. Every scenario connects with both
/// sides offering persistent grants and ends with a disconnect, so under
/// `fixed` it shows none of these.
enum Symptom: Hashable, Sendable {
    /// The fake environment raised it (the driver collects these after every step).
    case alarm(Defect)
    /// A connect came out non-persistent.
    case negotiatedNonPersistent
    /// After a step, a record in the published tree held a handle that is not a
    /// live writable mapping of its gref.
    case treeRecordWronglyMapped
    /// After a step, the published count was not the number of records in the tree.
    case countNotNodes
    /// After a step, the tree held more records than the persistent grant limit.
    case overLimit
    /// A request was answered more than once.
    case answeredTwice
    /// Something of the domain is still mapped, or allocated, after the disconnect.
    case leftoverMapping, leftoverAllocation
}

/// A short scenario that shows a quirk's defect in what the fake environment
/// observes or the backend publishes, and which runs clean on the fixed backend.
/// (Watching every step for all symptoms judges whole runs, as the oracle does;
/// that half belongs in HarnessTests, judged by the oracle itself.)
struct QuirkScenario: Sendable, CustomTestStringConvertible {
    let name: String
    let quirk: Quirk
    /// Every one of these must be seen under `fixed+quirk`.
    let shows: Set<Symptom>
    let run: @Sendable (Driver) -> Void
    var testDescription: String { "\(quirk.rawValue): \(name)" }

    /// Runs the scenario on a fresh driver, watching every step, and returns all it showed.
    func symptoms(under variant: BackendVariant) -> (Driver, Set<Symptom>) {
        let d = Driver(variant)
        var seen: Set<Symptom> = []
        d.afterEveryStep = { d, step in
            if step.negotiated == false { seen.insert(.negotiatedNonPersistent) }
            guard let tree = d.tree, let snapshot = d.snapshot else { return }
            if !d.wronglyMappedTreeRecords.isEmpty { seen.insert(.treeRecordWronglyMapped) }
            if snapshot.persistentCount != tree.nodes.count { seen.insert(.countNotNodes) }
            if tree.nodes.count > snapshot.maxPersistent { seen.insert(.overLimit) }
        }
        run(d)
        seen.formUnion(d.findings.map { .alarm($0.defect) })
        if d.responseCount.values.contains(where: { $0 > 1 }) { seen.insert(.answeredTwice) }
        if !d.liveMappings.isEmpty { seen.insert(.leftoverMapping) }
        if !d.liveAllocations.isEmpty { seen.insert(.leftoverAllocation) }
        return (d, seen)
    }

    /// At least one scenario per quirk; the switch makes a new quirk a compile error here.
    static func scenarios(for quirk: Quirk) -> [QuirkScenario] {
        switch quirk {
        case .lostMapError, .staleGrantPointers, .indirectDoubleFetch, .teardownPoolLeak:
            return []   // G2013 only: G2013BackendTests shows each
        case .activeGrantZapped, .hotplugOverridesNegotiation, .negotiationSticksAtZero, .advertisesNegotiated:
            return []   // G2018 only: G2018BackendTests shows each
        case .handleZeroUnmapped:
            return [
                QuirkScenario(name: "a later request hits the record with handle 0", quirk: quirk,
                              shows: [.alarm(.panic)]) { d in
                    d.connect()
                    d.grant(1)
                    d.write(id: 1, [seg(1)])
                    d.read(id: 2, [seg(1)])
                    d.disconnect()
                },
                QuirkScenario(name: "a duplicate gref in the request that mapped handle 0", quirk: quirk,
                              shows: [.alarm(.panic)]) { d in
                    d.connect()
                    d.grant(1)
                    d.read(id: 1, [seg(1), seg(1)])
                    d.disconnect()
                },
                QuirkScenario(name: "a hit on handle 0 next to new maps", quirk: quirk, shows: [.alarm(.panic)]) { d in
                    d.connect(maxPersistent: 2)
                    d.grant(1...4)
                    d.write(id: 1, [seg(1)])
                    d.write(id: 2, [seg(1), seg(3), seg(4)])
                    d.disconnect()
                },
            ]
        case .persistentKey:
            return [QuirkScenario(name: "the frontend writes feature-persistent only", quirk: quirk,
                                  shows: [.negotiatedNonPersistent]) { d in
                d.connect(persistent: true)
                d.grant(1)
                d.write(id: 1, [seg(1)])
                d.disconnect()
            }]
        case .teardownNextAfterFree:
            return [QuirkScenario(name: "disconnect with a few grants in the tree", quirk: quirk,
                                  shows: [.alarm(.useAfterFree)]) { d in
                d.connect()
                d.grant(1...5)
                d.write(id: 1, [seg(3), seg(1), seg(5), seg(2), seg(4)])
                d.disconnect()
            }]
        case .teardownKeepsPages:
            return [QuirkScenario(name: "disconnect with grants in the tree", quirk: quirk,
                                  shows: [.leftoverAllocation]) { d in
                d.connect()
                d.grant(1...3)
                d.write(id: 1, [seg(1), seg(2), seg(3)])
                d.disconnect()
            }]
        case .failedMapKeepsPage:
            return [QuirkScenario(name: "a new persistent map fails", quirk: quirk, shows: [.leftoverAllocation]) { d in
                d.connect()
                d.grant(1, 2)
                d.xen.faults.failMap(gref: 1, times: 1, status: .generalError)
                d.write(id: 1, [seg(1), seg(2)])
                d.disconnect()
            }]
        case .duplicateDangles:
            return [QuirkScenario(name: "a duplicate gref whose new persistent map fails", quirk: quirk,
                                  shows: [.alarm(.useAfterFree)]) { d in
                d.connect()
                d.grant(5)
                d.xen.faults.failMap(gref: 5, times: 1, status: .generalError)
                d.read(id: 1, [seg(5), seg(5)])
                d.disconnect()
            }]
        case .enomemNoRollback:
            return [
                // Allocations: record 1, page 1, record 2 (fails).
                QuirkScenario(name: "ENOMEM on the second new gref", quirk: quirk,
                              shows: [.treeRecordWronglyMapped, .alarm(.badUnmap)]) { d in
                    d.connect()
                    d.grant(1, 2)
                    d.xen.faults.failAllocation(nth: 3)
                    d.write(id: 1, [seg(1), seg(2)])
                    d.disconnect()
                },
                // Handle 0 belongs to gref 3: the stale record claims it too.
                QuirkScenario(name: "ENOMEM while handle 0 is someone else's", quirk: quirk,
                              shows: [.treeRecordWronglyMapped, .alarm(.badUnmap)]) { d in
                    d.connect()
                    d.grant(1, 2, 3)
                    d.write(id: 1, [seg(3)])
                    d.xen.faults.failAllocation(nth: 3)
                    d.write(id: 2, [seg(1), seg(2)])
                    d.read(id: 3, [seg(3)])
                    d.disconnect()
                },
            ]
        case .bugOnHypercallError:
            return [QuirkScenario(name: "the map hypercall fails", quirk: quirk, shows: [.alarm(.panic)]) { d in
                d.connect()
                d.grant(1)
                d.xen.faults.failHypercall(nth: 1)
                d.write(id: 1, [seg(1)])
                d.disconnect()
            }]
        case .freeBeforeDrain:
            return [QuirkScenario(name: "disconnect with a held request through persistent grants", quirk: quirk,
                                  shows: [.alarm(.unmapInUse), .alarm(.useAfterFree)]) { d in
                d.connect()
                d.grant(1, 2)
                d.stamp(1, token: 1)
                d.write(id: 1, [seg(1), seg(2)], hold: true)
                d.disconnect()
            }]
        case .responsePaddingLeak:
            return [QuirkScenario(name: "any response, here a one-page read", quirk: quirk,
                                  shows: [.alarm(.hostBytesInRing)]) { d in
                d.connect()
                d.grant(1)
                _ = d.read(id: 1, [seg(1)])
                d.disconnect()
            }]
        }
    }

    /// The G2012 quirks' scenarios (G2013's are in G2013BackendTests).
    static let all: [QuirkScenario] = Generation.g2012.quirks.flatMap { scenarios(for: $0) }
}

@Suite struct QuirkTests {
    @Test func everyQuirkHasAScenario() {
        #expect(Set(QuirkScenario.all.map(\.quirk)) == Set(Generation.g2012.quirks))
    }

    @Test(arguments: QuirkScenario.all)
    func theQuirkIsObservedAndFixedIsClean(_ scenario: QuirkScenario) {
        let (fixed, fixedShows) = scenario.symptoms(under: .fixed)
        #expect(fixedShows.isEmpty, "fixed: \(fixedShows), \(fixed.findings)")
        #expect(fixed.backend.panic == nil)
        #expect(!fixed.isConnected)

        let variant = BackendVariant(quirks: [scenario.quirk])
        let (quirky, seen) = scenario.symptoms(under: variant)
        #expect(scenario.shows.isSubset(of: seen),
                "\(variant): expected \(scenario.shows), saw \(seen), \(quirky.findings)")
        if scenario.shows.contains(.alarm(.panic)) {
            #expect(quirky.backend.panic != nil)
        }
    }

    @Test func persistentKeySeedReadsTheOtherKey() {
        let d = Driver(BackendVariant(quirks: [.persistentKey]))
        d.frontendKey("feature-persistent-grants", "1")
        d.frontendKey("feature-persistent", "0")
        let step = d.connect(persistent: nil)
        #expect(step.negotiated == true)
        #expect(d.snapshot?.persistentMode == true)
    }

    @Test func enomemNoRollbackLeavesAnUnmappedRecordWithHandleZero() {
        let d = Driver(BackendVariant(quirks: [.enomemNoRollback]))
        d.connect()
        d.grant(1, 2)
        d.xen.faults.failAllocation(nth: 3)
        d.write(id: 1, [seg(1), seg(2)])
        #expect(d.treeGrefs == [1])
        #expect(d.tree?.nodes.first?.handle == 0)
        #expect(d.xen.grants.mapping(handle: 0) == nil)
        let teardown = d.disconnect()
        #expect(teardown.unmapBatches.flatMap(\.results).map(\.status) == [.badHandle])
    }

    @Test func failedMapKeepsPageLeaksAtOnce() {
        let d = Driver(BackendVariant(quirks: [.failedMapKeepsPage]))
        d.connect()
        d.grant(1)
        d.xen.faults.failMap(gref: 1, times: 1, status: .generalError)
        d.write(id: 1, [seg(1)])
        #expect(d.treeGrefs.isEmpty)
        #expect(d.liveAllocations.count == 1)
        #expect(d.liveAllocations.first?.hasPrefix("page") == true)
    }
}
