import FakeXen
import Trace

extension Checks {
    /// `negotiation`: a connect of a vbd not connected publishes exactly one
    /// negotiated mode, and it is persistent grants on exactly when the
    /// backend offers them and the frontend's `feature-persistent` reads as
    /// 1; every other event, a repeated Connected among them, publishes none.
    /// The backend's own `feature-persistent` key then reads as predicted
    /// (what a frontend decides on). After a connect or a request, the
    /// backend holds that vbd's connection.
    /// (The publications are handed to it, not kept in `observed`: kept,
    /// the list was retained and released once more on every event.)
    static func negotiation(_ prediction: Prediction, _ observed: EventObservation, published publications: [Publication],
                            in world: some ObservedWorld, into findings: inout [Finding]) {
        if let expected = prediction.negotiation {
            let seen = publications.compactMap { publication -> Bool? in
                if case let .negotiated(vbd, persistent) = publication, vbd == expected.vbd { return persistent }
                return nil
            }
            if seen != [expected.persistent] {
                findings.append(Finding(
                    .negotiation, in: .connection,
                    expected: "persistent grants \(expected.persistent ? "on" : "off") (backend offers: \(expected.backendOffers), frontend feature-persistent: \(expected.frontendFeature ?? "absent"))",
                    seen: seen.isEmpty ? "no negotiation" : seen.map { $0 ? "on" : "off" }.joined(separator: ", ")))
            }
            let advertised = world.backendKey(domid: expected.domid, vbd: expected.vbd, "feature-persistent")
            if advertised != expected.advertised {
                findings.append(Finding(
                    .negotiation, in: .connection,
                    expected: "backend key feature-persistent " + (expected.advertised.map { "\"\($0)\"" } ?? "absent"),
                    seen: advertised.map { "\"\($0)\"" } ?? "absent"))
            }
        } else {
            for case let .negotiated(vbd, persistent) in publications {
                findings.append(Finding(.negotiation, in: .connection, expected: "no negotiation now",
                                        seen: "vbd \(vbd) negotiated persistent grants \(persistent ? "on" : "off")"))
            }
        }
        if let tree = prediction.tree, observed.connection == nil {
            findings.append(Finding(.negotiation, in: .tree, expected: "vbd \(tree.vbd) connected",
                                    seen: "the backend has no such connection"))
        }
    }

    /// `teardown`: after a disconnect the backend no longer holds the vbd,
    /// nothing of the domain is mapped beyond what its other connections
    /// hold, nothing is left allocated for the vbd, and every handle of the
    /// torn-down tree and of the held requests' one-offs was unmapped.
    /// (Lists of mappings and allocations are built only when the world
    /// counts some: with none, nothing is left.)
    static func teardown(_ prediction: Prediction, _ observed: EventObservation, in world: some ObservedWorld,
                         into findings: inout [Finding]) {
        guard let teardown = prediction.teardown else { return }
        if observed.connection != nil {
            findings.append(Finding(.teardown, in: .connection, expected: "vbd \(teardown.vbd) gone after disconnect",
                                    seen: "the backend still holds it"))
        }
        if world.liveMappingCount(of: teardown.domid) > 0 {
            let stillExpected = prediction.mappedAfter.handles(of: teardown.domid)
            let left = world.liveMappings(of: teardown.domid).filter { !stillExpected.contains($0.handle) }
            if !left.isEmpty {
                findings.append(Finding(
                    .teardown, in: .connection, expected: "nothing of domain \(teardown.domid) mapped after disconnect",
                    seen: "still mapped: " + Wording.list(left.map { "gref \($0.gref) (handle \($0.handle))" })))
            }
        }
        let owner = AllocationOwner(domid: teardown.domid, vbd: teardown.vbd)
        let allocated = world.liveAllocationCount(of: owner) > 0 ? world.liveAllocations(of: owner) : []
        if !allocated.isEmpty {
            findings.append(Finding(
                .teardown, in: .connection,
                expected: "nothing allocated for domain \(teardown.domid) vbd \(teardown.vbd) after disconnect",
                seen: "still allocated: " + Wording.list(allocated)))
        }
        if !observed.unmaps.missing.isEmpty {
            findings.append(Finding(.teardown, in: .unmapOps,
                                    expected: "unmap of handle(s) \(Wording.handles(observed.unmaps.missing))",
                                    seen: "not unmapped"))
        }
    }
}
