import Testing
import Blkif
import FakeXen
import Backend

/// A short scenario in which the fake environment observes a quirk's defect,
/// and which runs clean on the fixed backend.
struct QuirkScenario: Sendable, CustomTestStringConvertible {
    let name: String
    let quirk: Quirk
    /// Every one of these must be seen under `fixed+quirk`.
    let shows: Set<Defect>
    let run: @Sendable (Driver) -> Void
    var testDescription: String { "\(quirk.rawValue): \(name)" }

    /// At least one scenario per quirk; the switch makes a new quirk a compile error here.
    static func scenarios(for quirk: Quirk) -> [QuirkScenario] {
        switch quirk {
        case .handleZeroUnmapped:
            return [
                QuirkScenario(name: "a later request hits the record with handle 0", quirk: quirk, shows: [.panic]) { d in
                    d.connect()
                    d.grant(1)
                    d.write(id: 1, [seg(1)])
                    d.read(id: 2, [seg(1)])
                    d.disconnect()
                },
                QuirkScenario(name: "a duplicate gref in the request that mapped handle 0", quirk: quirk, shows: [.panic]) { d in
                    d.connect()
                    d.grant(1)
                    d.read(id: 1, [seg(1), seg(1)])
                    d.disconnect()
                },
                QuirkScenario(name: "a hit on handle 0 next to new maps", quirk: quirk, shows: [.panic]) { d in
                    d.connect(maxPersistent: 2)
                    d.grant(1...4)
                    d.write(id: 1, [seg(1)])
                    d.write(id: 2, [seg(1), seg(3), seg(4)])
                    d.disconnect()
                },
            ]
        case .persistentKey:
            return [QuirkScenario(name: "the frontend writes feature-persistent only", quirk: quirk, shows: [.negotiation]) { d in
                d.connect(persistent: true)
                d.grant(1)
                d.write(id: 1, [seg(1)])
                d.disconnect()
            }]
        case .teardownNextAfterFree:
            return [QuirkScenario(name: "disconnect with a few grants in the tree", quirk: quirk, shows: [.useAfterFree]) { d in
                d.connect()
                d.grant(1...5)
                d.write(id: 1, [seg(3), seg(1), seg(5), seg(2), seg(4)])
                d.disconnect()
            }]
        case .teardownKeepsPages:
            return [QuirkScenario(name: "disconnect with grants in the tree", quirk: quirk, shows: [.leftoverAllocation]) { d in
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
            return [QuirkScenario(name: "a duplicate gref whose new persistent map fails", quirk: quirk, shows: [.useAfterFree]) { d in
                d.connect()
                d.grant(5)
                d.xen.faults.failMap(gref: 5, times: 1, status: .generalError)
                d.read(id: 1, [seg(5), seg(5)])
                d.disconnect()
            }]
        case .enomemNoRollback:
            return [
                // Allocations: record 1, page 1, record 2 (fails).
                QuirkScenario(name: "ENOMEM on the second new gref", quirk: quirk, shows: [.treeMapping, .badUnmap]) { d in
                    d.connect()
                    d.grant(1, 2)
                    d.xen.faults.failAllocation(nth: 3)
                    d.write(id: 1, [seg(1), seg(2)])
                    d.disconnect()
                },
                // Handle 0 belongs to gref 3: the stale record claims it too.
                QuirkScenario(name: "ENOMEM while handle 0 is someone else's", quirk: quirk, shows: [.treeMapping, .badUnmap]) { d in
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
            return [QuirkScenario(name: "the map hypercall fails", quirk: quirk, shows: [.panic]) { d in
                d.connect()
                d.grant(1)
                d.xen.faults.failHypercall(nth: 1)
                d.write(id: 1, [seg(1)])
                d.disconnect()
            }]
        case .freeBeforeDrain:
            return [QuirkScenario(name: "disconnect with a held request through persistent grants", quirk: quirk,
                                  shows: [.unmapInUse, .useAfterFree]) { d in
                d.connect()
                d.grant(1, 2)
                d.stamp(1, token: 1)
                d.write(id: 1, [seg(1), seg(2)], hold: true)
                d.disconnect()
            }]
        }
    }

    static let all: [QuirkScenario] = Quirk.allCases.flatMap { scenarios(for: $0) }
}

@Suite struct QuirkTests {
    @Test func everyQuirkHasAScenario() {
        #expect(Set(QuirkScenario.all.map(\.quirk)) == Set(Quirk.allCases))
    }

    @Test(arguments: QuirkScenario.all)
    func theQuirkIsObservedAndFixedIsClean(_ scenario: QuirkScenario) {
        let fixed = Driver(.fixed)
        scenario.run(fixed)
        #expect(fixed.findings.isEmpty, "fixed: \(fixed.findings)")
        #expect(fixed.backend.panic == nil)
        #expect(!fixed.isConnected)
        #expect(fixed.liveMappings.isEmpty)
        #expect(fixed.liveAllocations.isEmpty)

        let variant = BackendVariant(quirks: [scenario.quirk])
        let quirky = Driver(variant)
        scenario.run(quirky)
        let seen = Set(quirky.findings.map(\.defect))
        #expect(scenario.shows.isSubset(of: seen),
                "\(variant): expected \(scenario.shows.map(\.rawValue).sorted()), saw \(quirky.findings)")
        if scenario.shows.contains(.panic) {
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
        #expect(d.findings(.negotiation).count == 2)
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
