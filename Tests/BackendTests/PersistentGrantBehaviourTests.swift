import Testing
import Blkif
import FakeXen
import Backend

private let opWrite = BlkifOperation.write.rawValue
private let opRead = BlkifOperation.read.rawValue
private let writable: GrantMapFlags = .hostMap
private let readOnlyMap: GrantMapFlags = [.hostMap, .readOnly]

@Suite struct NegotiationTests {
    @Test func persistentWhenBothSidesOfferIt() {
        let d = Driver()
        let step = d.connect(persistent: true)
        #expect(step.negotiated == true)
        #expect(d.snapshot?.persistentMode == true)
        #expect(d.xen.xenstore.read(d.backendDirectory + "/feature-persistent") == "1")
        #expect(d.snapshot?.maxPersistent == 352)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test(arguments: [nil, "0", "2", "yes"] as [String?])
    func notPersistentWithoutTheFrontendKey(value: String?) {
        let d = Driver()
        d.frontendKey("feature-persistent-grants", "1")   // the seed's key is not the protocol's
        if let value { d.frontendKey("feature-persistent", value) }
        let step = d.connect(persistent: nil)
        #expect(step.negotiated == false)
        #expect(d.snapshot?.persistentMode == false)
        #expect(d.xen.xenstore.read(d.backendDirectory + "/feature-persistent") == "1")
        checkGrantsAreMappedPerRequest(d)
    }

    @Test func notPersistentWhenTheBackendDoesNotOfferIt() {
        let d = Driver()
        let step = d.connect(persistent: true, offers: false)
        #expect(step.negotiated == false)
        #expect(d.snapshot?.persistentMode == false)
        #expect(d.xen.xenstore.read(d.backendDirectory + "/feature-persistent") == nil)
        checkGrantsAreMappedPerRequest(d)
    }

    @Test func negotiationIsDecidedAtEveryConnect() {
        let d = Driver()
        d.grant(1)
        d.connect(persistent: true)
        #expect(d.write(id: 1, [seg(1)]).status(id: 1) == .okay)
        expectTree(d, [1])
        d.disconnect()
        expectNothingLeft(d)
        d.connect(persistent: false)
        #expect(d.snapshot?.persistentMode == false)
        let oneOff = d.write(id: 2, [seg(1)])
        #expect(oneOff.status(id: 2) == .okay)
        #expect(oneOff.mapOps.map(\.flags) == [readOnlyMap])
        #expect(d.treeGrefs.isEmpty)
        d.disconnect()
        expectNothingLeft(d)
        d.connect(persistent: true, offers: false)
        #expect(d.snapshot?.persistentMode == false)
        d.disconnect()
        expectNothingLeft(d)
        d.connect(persistent: true)
        #expect(d.snapshot?.persistentMode == true)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    /// Without persistent mode every map is per request: read-only for
    /// writes, one op per segment even for duplicate grefs, and unmapped at
    /// completion.
    private func checkGrantsAreMappedPerRequest(_ d: Driver) {
        d.grant(1...3)
        d.grant(4, readOnly: true)
        let w = d.write(id: 1, [seg(1), seg(2), seg(1), seg(4)])
        #expect(w.status(id: 1) == .okay)
        #expect(w.mapBatches.count == 1)
        #expect(w.mapOps.map(\.gref) == [1, 2, 1, 4])
        #expect(w.mapOps.allSatisfy { $0.flags == readOnlyMap })
        #expect(w.unmapBitmaps.map(\.bitmap) == [0b1111])
        let mapped = Set(w.mapBatches.flatMap { $0.results ?? [] }.map(\.handle))
        #expect(Set(w.unmapOps.map(\.handle)) == mapped)
        #expect(mapped.count == 4)
        #expect(d.liveMappings.isEmpty)
        let r = d.read(id: 2, [seg(3)])
        #expect(r.status(id: 2) == .okay)
        #expect(r.mapOps.map(\.flags) == [writable])
        #expect(r.unmapOps.count == 1)
        // The same grefs again: mapped again.
        #expect(d.write(id: 3, [seg(1)]).mapOps.count == 1)
        #expect(d.treeGrefs.isEmpty)
        #expect(d.liveMappings.isEmpty)
        #expect(d.liveAllocations.isEmpty)
        #expect(d.xen.grants.revoke(domid: d.domid, gref: 1))
        let teardown = d.disconnect()
        expectNothingLeft(d)
        #expect(teardown.unmapOps.isEmpty)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }
}

@Suite struct PersistentMappingTests {
    @Test func aSecondRequestWithTheSameGrefsIssuesNoMapOp() {
        let d = Driver()
        d.connect()
        d.grant(1...3)
        let first = d.write(id: 1, [seg(1), seg(2), seg(3)])
        #expect(first.status(id: 1) == .okay)
        #expect(first.mapBatches.count == 1)
        #expect(first.mapOps.map(\.gref) == [1, 2, 3])
        #expect(first.mapOps.allSatisfy { $0.flags == writable && $0.domid == d.domid })
        #expect(first.unmapOps.isEmpty)
        #expect(first.unmapBitmaps.map(\.bitmap) == [0])
        expectTree(d, [1, 2, 3])
        #expect(d.snapshot?.persistentCount == 3)
        #expect(d.liveAllocations.count == 6)

        let second = d.read(id: 2, [seg(3), seg(1), seg(2, 1, 1)])
        #expect(second.status(id: 2) == .okay)
        #expect(second.mapBatches.isEmpty)
        #expect(second.unmapOps.isEmpty)
        #expect(d.liveMappings.count == 3)

        // A new gref next to known ones: one op only, for it.
        d.grant(4)
        let third = d.write(id: 3, [seg(1), seg(4), seg(3)])
        #expect(third.mapOps.map(\.gref) == [4])
        expectTree(d, [1, 2, 3, 4])

        // Persistently mapped grants cannot be revoked while connected.
        #expect(!d.revoke(2))
        let teardown = d.disconnect()
        expectNothingLeft(d)
        #expect(Set(teardown.unmapOps.map(\.handle)) == [0, 1, 2, 3])
        #expect(teardown.unmapBatches.allSatisfy { $0.ops.count <= Blkif.maxSegmentsPerRequest })
        #expect(d.revoke(2))
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func teardownUnmapsInBatchesOfAtMostEleven() {
        let d = Driver()
        d.connect()
        d.grant(1...30)
        for batch in 0..<3 {
            let grefs = (1...10).map { GrantRef(batch * 10 + $0) }
            #expect(d.write(id: UInt64(batch), grefs.map { seg($0) }).status(id: UInt64(batch)) == .okay)
        }
        #expect(d.snapshot?.persistentCount == 30)
        expectTree(d, Array(1...30))
        let teardown = d.disconnect()
        expectNothingLeft(d)
        #expect(teardown.unmapBatches.map(\.ops.count) == [11, 11, 8])
        #expect(teardown.unmapOps.count == 30)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func theLimitReachedInsideOneRequestMixesPersistentAndNonPersistent() {
        let d = Driver()
        d.connect(maxPersistent: 2)
        #expect(d.snapshot?.maxPersistent == 2)
        d.grant(1...6)
        let first = d.write(id: 1, [seg(1), seg(2), seg(3), seg(4)])
        #expect(first.status(id: 1) == .okay)
        #expect(first.mapBatches.count == 1)
        #expect(first.mapOps.map(\.gref) == [1, 2, 3, 4])
        #expect(first.mapOps.map(\.flags) == [writable, writable, readOnlyMap, readOnlyMap])
        #expect(first.unmapBitmaps.map(\.bitmap) == [0b1100])
        #expect(first.alerts.count == 1)
        let results = first.mapBatches[0].results ?? []
        #expect(first.unmapOps.map(\.handle) == results.suffix(2).map(\.handle))
        expectTree(d, [1, 2])
        #expect(d.liveMappings.count == 2)

        // Reads over the limit are mapped writable; no second alert.
        let second = d.read(id: 2, [seg(5), seg(1), seg(6)])
        #expect(second.mapOps.map(\.gref) == [5, 6])
        #expect(second.mapOps.map(\.flags) == [writable, writable])
        #expect(second.unmapBitmaps.map(\.bitmap) == [0b101])
        #expect(second.alerts.isEmpty)
        expectTree(d, [1, 2])
        d.disconnect()
        expectNothingLeft(d)

        // A new connection alerts again, once.
        d.connect(maxPersistent: 2)
        #expect(d.write(id: 3, [seg(1), seg(2), seg(3)]).alerts.count == 1)
        #expect(d.write(id: 4, [seg(4), seg(5)]).alerts.isEmpty)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func aLimitOfZeroMapsEverythingPerRequest() {
        let d = Driver()
        d.connect(maxPersistent: 0)
        d.grant(1...2)
        let step = d.write(id: 1, [seg(1), seg(2)])
        #expect(step.status(id: 1) == .okay)
        #expect(step.mapOps.map(\.flags) == [readOnlyMap, readOnlyMap])
        #expect(step.alerts.count == 1)
        #expect(d.liveMappings.isEmpty)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func duplicateGrefsInOneRequestShareOneMapping() {
        let d = Driver()
        d.connect()
        d.grant(5, 6)
        let five = d.stamp(5, token: 5000)
        let six = d.stamp(6, token: 6000)
        let step = d.write(id: 1, sector: 0, [seg(5, 0, 3), seg(6), seg(5, 4, 7), seg(6, 2, 2)])
        #expect(step.status(id: 1) == .okay)
        #expect(step.mapOps.map(\.gref) == [5, 6])
        #expect(step.unmapBitmaps.map(\.bitmap) == [0])
        expectTree(d, [5, 6])
        #expect(d.liveMappings.count == 2)
        #expect(d.liveAllocations.count == 4)
        #expect(d.diskTokens(0...16) == Array(five[0...3]) + six + Array(five[4...7]) + [six[2]])
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func aDuplicateGrefInARequestHittingTheTreeUsesTheTreeMapping() {
        let d = Driver()
        d.connect()
        d.grant(1)
        d.write(id: 1, [seg(1)])
        let step = d.read(id: 2, [seg(1), seg(1)])
        #expect(step.status(id: 2) == .okay)
        #expect(step.mapBatches.isEmpty)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func readOnlyGrantsFailUnderPersistentMode() {
        let d = Driver()
        d.connect()
        d.grant(1, readOnly: true)
        d.grant(2)
        let step = d.write(id: 1, [seg(2), seg(1)])
        #expect(step.status(id: 1) == .error)
        #expect(step.mapOps.map(\.flags) == [writable, writable])
        #expect(step.mapBatches.first?.results?.map(\.status) == [.okay, .generalError])
        // The good one stays persistent.
        expectTree(d, [2])
        #expect(d.liveAllocations.count == 2)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }
}

@Suite struct MapFailureTests {
    @Test func aFailedNewPersistentMapIsRolledBackAndTheRequestFails() {
        let d = Driver()
        d.connect(maxPersistent: 2)
        d.grant(1...3)
        d.stamp(1, token: 100)
        d.xen.faults.failMap(gref: 1, times: 1, status: .generalError)
        let step = d.write(id: 1, sector: 8, [seg(1), seg(2), seg(3)])
        #expect(step.status(id: 1) == .error)
        #expect(step.mapBatches.count == 1)
        #expect(step.mapOps.map(\.gref) == [1, 2, 3])
        let results = step.mapBatches.first?.results ?? []
        #expect(results.map(\.status) == [.generalError, .okay, .okay])
        // Gref 1 is gone from the tree, its record and page freed; 2 stays.
        expectTree(d, [2])
        #expect(d.snapshot?.persistentCount == 1)
        #expect(d.liveAllocations.count == 2)
        // The successful one-off map of 3 was unmapped.
        #expect(step.unmapOps.map(\.handle) == [results[2].handle])
        #expect(d.liveMappings.map(\.gref) == [2])
        // No data moved.
        #expect(d.diskTokens(8...31) == (8...31).map { Ramdisk.initialToken(sector: $0) })

        // The same request again works: 1 becomes persistent, 3 stays one-off.
        let again = d.write(id: 2, sector: 8, [seg(1), seg(2), seg(3)])
        #expect(again.status(id: 2) == .okay)
        #expect(again.mapOps.map(\.gref) == [1, 3])
        #expect(again.mapOps.map(\.flags) == [writable, readOnlyMap])
        expectTree(d, [1, 2])
        #expect(d.diskTokens(8...15) == (100...107).map { UInt64($0) })
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func aFailedOneOffMapKeepsTheNewPersistentOnes() {
        let d = Driver()
        d.connect(maxPersistent: 2)
        d.grant(1...4)
        d.xen.faults.failMap(gref: 3, times: 1, status: .badPage)
        let step = d.read(id: 1, [seg(1), seg(2), seg(3), seg(4)])
        #expect(step.status(id: 1) == .error)
        #expect(step.mapBatches.first?.results?.map(\.status) == [.okay, .okay, .badPage, .okay])
        expectTree(d, [1, 2])
        #expect(step.unmapOps.count == 1)
        #expect(d.liveMappings.map(\.gref) == [1, 2])
        // The tree entries are usable.
        let next = d.read(id: 2, [seg(1), seg(2)])
        #expect(next.status(id: 2) == .okay)
        #expect(next.mapBatches.isEmpty)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func aDuplicateGrefWhoseNewMapFailsLeavesNothing() {
        let d = Driver()
        d.connect()
        d.grant(5, 6)
        d.xen.faults.failMap(gref: 5, times: 1, status: .generalError)
        let step = d.read(id: 1, [seg(5), seg(6), seg(5)])
        #expect(step.status(id: 1) == .error)
        #expect(step.mapOps.map(\.gref) == [5, 6])
        expectTree(d, [6])
        #expect(d.liveAllocations.count == 2)
        #expect(d.liveMappings.map(\.gref) == [6])
        #expect(d.xen.grants.revoke(domid: d.domid, gref: 5))
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func anUnknownGrefFailsTheRequest() {
        let d = Driver()
        d.connect()
        d.grant(1)
        let step = d.write(id: 1, [seg(1), seg(99)])
        #expect(step.status(id: 1) == .error)
        #expect(step.mapBatches.first?.results?.map(\.status) == [.okay, .badGntref])
        expectTree(d, [1])
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func aFailedHypercallFailsEveryOpOfTheBatch() {
        let d = Driver()
        d.connect(maxPersistent: 2)
        d.grant(1...3)
        d.write(id: 1, [seg(1)])
        d.xen.faults.failHypercall(nth: 1)
        let step = d.write(id: 2, [seg(1), seg(2), seg(3)])
        #expect(step.status(id: 2) == .error)
        #expect(step.mapBatches.count == 1)
        #expect(step.mapBatches.first.map { $0.results == nil } == true)
        #expect(step.mapOps.map(\.gref) == [2, 3])
        #expect(step.unmapOps.isEmpty)
        #expect(d.backend.panic == nil)
        expectTree(d, [1])
        #expect(d.liveMappings.map(\.gref) == [1])
        #expect(d.liveAllocations.count == 2)
        // And it all works next time.
        #expect(d.write(id: 3, [seg(1), seg(2), seg(3)]).status(id: 3) == .okay)
        expectTree(d, [1, 2])
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func aHypercallFailureInNonPersistentModeLeavesNothingMapped() {
        let d = Driver()
        d.connect(persistent: false)
        d.grant(1...3)
        d.xen.faults.failHypercall(nth: 1)
        let step = d.write(id: 1, [seg(1), seg(2), seg(3)])
        #expect(step.status(id: 1) == .error)
        #expect(d.liveMappings.isEmpty)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    /// Allocations of the request `[1 (hit), 2 (new), 3 (new)]`: record 2,
    /// page 2, record 3, page 3. Whichever fails, the tree is as before.
    @Test(arguments: 1...4)
    func anAllocationFailureLeavesTheTreeAsBefore(nth: Int) {
        let d = Driver()
        d.connect()
        d.grant(1...3)
        d.write(id: 1, [seg(1)])
        let handleBefore = d.tree?.nodes.first?.handle
        d.xen.faults.failAllocation(nth: nth)
        let step = d.write(id: 2, [seg(1), seg(2), seg(3)])
        #expect(step.status(id: 2) == .error)
        #expect(step.allocationFailures == 1)
        #expect(step.mapBatches.isEmpty)
        #expect(step.unmapOps.isEmpty)
        expectTree(d, [1])
        #expect(d.tree?.nodes.first?.handle == handleBefore)
        #expect(d.snapshot?.persistentCount == 1)
        #expect(d.liveAllocations.count == 2)
        #expect(d.liveMappings.map(\.gref) == [1])
        #expect(d.xen.faults.isIdle)
        #expect(d.write(id: 3, [seg(1), seg(2), seg(3)]).status(id: 3) == .okay)
        expectTree(d, [1, 2, 3])
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    /// The slot's previous request left bits in its unmap bitmap: an ENOMEM
    /// in the next request of that slot must not unmap anything.
    @Test func anAllocationFailureAfterOneOffMapsUnmapsNothing() {
        let d = Driver()
        d.connect(maxPersistent: 2)
        d.grant(1...4)
        d.xen.faults.failMap(gref: 1, times: 1, status: .generalError)
        let first = d.write(id: 1, [seg(1), seg(2), seg(3)])
        #expect(first.status(id: 1) == .error)
        #expect(first.unmapOps.count == 1)
        expectTree(d, [2])
        d.xen.faults.failAllocation(nth: 1)
        let step = d.write(id: 2, [seg(4)])
        #expect(step.status(id: 2) == .error)
        #expect(step.unmapOps.isEmpty)
        expectTree(d, [2])
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }
}

/// Every invalid request is answered without mapping or allocating anything.
struct InvalidRequest: Sendable, CustomTestStringConvertible {
    let name: String
    let request: BlkifRequest
    let status: BlkifResponseStatus
    var flush = true
    var discard = false
    var testDescription: String { name }

    static let diskSectors: UInt64 = 4096

    static let all: [InvalidRequest] = {
        func rw(_ op: BlkifOperation, nr: UInt8? = nil, sector: UInt64 = 0, _ segments: [BlkifSegment]) -> BlkifRequest {
            BlkifRequest(operation: op.rawValue, nrSegments: nr, id: 42, sectorNumber: sector, segments: segments)
        }
        let eleven = (1...11).map { _ in seg(2) }
        return [
            InvalidRequest(name: "read with nr 0", request: rw(.read, []), status: .error),
            InvalidRequest(name: "write with nr 0", request: rw(.write, nr: 0, [seg(2)]), status: .error),
            InvalidRequest(name: "nr 12", request: rw(.read, nr: 12, eleven), status: .error),
            InvalidRequest(name: "nr 255", request: rw(.write, nr: 255, eleven), status: .error),
            InvalidRequest(name: "last_sect 8", request: rw(.read, [seg(2, 0, 8)]), status: .error),
            InvalidRequest(name: "last_sect 255", request: rw(.write, [seg(2, 7, 255)]), status: .error),
            InvalidRequest(name: "last < first", request: rw(.read, [seg(2, 5, 4)]), status: .error),
            InvalidRequest(name: "bad second segment", request: rw(.write, [seg(2), seg(3, 3, 9)]), status: .error),
            InvalidRequest(name: "past the end", request: rw(.read, sector: diskSectors - 7, [seg(2)]), status: .error),
            InvalidRequest(name: "past the end, second segment", request: rw(.write, sector: diskSectors - 9, [seg(2), seg(3)]), status: .error),
            InvalidRequest(name: "sector wraps around", request: rw(.read, sector: .max - 3, [seg(2)]), status: .error),
            InvalidRequest(name: "flush without flush support", request: rw(.flushDiskcache, []), status: .eopnotsupp, flush: false),
            InvalidRequest(name: "flush with segments without flush support", request: rw(.flushDiskcache, [seg(2)]), status: .eopnotsupp, flush: false),
            InvalidRequest(name: "barrier without flush support", request: rw(.writeBarrier, [seg(2)]), status: .eopnotsupp, flush: false),
            InvalidRequest(name: "discard without support",
                           request: BlkifRequest(operation: BlkifOperation.discard.rawValue, nrSegments: 0, id: 42, sectorNumber: 0, discardSectors: 8),
                           status: .eopnotsupp),
            InvalidRequest(name: "discard past the end",
                           request: BlkifRequest(operation: BlkifOperation.discard.rawValue, nrSegments: 0, id: 42, sectorNumber: diskSectors - 4, discardSectors: 8),
                           status: .error, discard: true),
            InvalidRequest(name: "reserved op 4", request: BlkifRequest(operation: 4, id: 42, sectorNumber: 0, segments: [seg(2)]), status: .error),
            InvalidRequest(name: "indirect op 6", request: BlkifRequest(operation: 6, id: 42, sectorNumber: 0, segments: [seg(2)]), status: .error),
            InvalidRequest(name: "unknown op 7", request: BlkifRequest(operation: 7, id: 42, sectorNumber: 0, segments: [seg(2)]), status: .error),
            InvalidRequest(name: "unknown op 200", request: BlkifRequest(operation: 200, id: 42, sectorNumber: 0, segments: [seg(2)]), status: .error),
        ]
    }()
}

@Suite struct ValidationTests {
    @Test(arguments: InvalidRequest.all)
    func invalidRequestsMapNothing(_ invalid: InvalidRequest) {
        for proto in BlkifProtocol.allCases {
            let d = Driver()
            d.connect(proto: proto, sectors: InvalidRequest.diskSectors, flush: invalid.flush, discard: invalid.discard)
            d.grant(1...3)
            #expect(d.write(id: 1, [seg(1)]).status(id: 1) == .okay)
            let version = d.snapshot?.treeVersion
            let allocations = d.liveAllocations
            let step = d.request(invalid.request)
            #expect(step.responses.count == 1, "\(proto)")
            #expect(step.responses.first?.id == 42)
            #expect(step.responses.first?.operation == invalid.request.operation)
            #expect(step.status(id: 42) == invalid.status, "\(proto)")
            #expect(step.mapBatches.isEmpty, "\(proto)")
            #expect(step.unmapOps.isEmpty)
            #expect(step.allocationFailures == 0)
            #expect(d.snapshot?.treeVersion == version)
            #expect(d.liveAllocations == allocations)
            expectTree(d, [1])
            #expect(d.snapshot?.inFlight.isEmpty == true)
            d.disconnect()
            expectNothingLeft(d)
            #expect(d.findings.isEmpty, "\(d.findings)")
        }
    }

    @Test func validEdgeCasesAreServed() {
        let d = Driver()
        d.connect(sectors: 64, flush: true, discard: true)
        d.grant(1...11)
        let all = (1...11).map { seg(GrantRef($0)) }
        #expect(d.write(id: 1, sector: 24, Array(all.prefix(5))).status(id: 1) == .okay)
        #expect(d.read(id: 2, sector: 0, all.prefix(8).map { seg($0.gref) }).status(id: 2) == .okay)
        #expect(d.read(id: 3, sector: 63, [seg(1, 7, 7)]).status(id: 3) == .okay)
        #expect(d.request(op: BlkifOperation.flushDiskcache.rawValue, id: 4, []).status(id: 4) == .okay)
        #expect(d.request(op: BlkifOperation.writeBarrier.rawValue, id: 5, [seg(1)]).status(id: 5) == .okay)
        #expect(d.discard(id: 6, sector: 60, count: 4).status(id: 6) == .okay)
        // nr_segments says 1: the malformed slot behind it is not looked at.
        let lying = BlkifRequest(operation: opRead, nrSegments: 1, id: 7, sectorNumber: 0, segments: [seg(1), seg(2, 5, 3)])
        #expect(d.request(lying).status(id: 7) == .okay)
        expectTree(d, Array(1...8))
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }
}

@Suite struct InFlightTests {
    @Test func heldRequestsCompleteInAnyOrder() {
        let d = Driver()
        d.connect(maxPersistent: 2)
        d.grant(1...6)
        d.stamp(1, token: 100)
        d.stamp(2, token: 200)
        d.stamp(5, token: 500)
        let s1 = d.write(id: 1, sector: 0, [seg(1), seg(2)], hold: true)
        #expect(s1.responses.isEmpty)
        #expect(s1.mapOps.map(\.flags) == [writable, writable])
        let s2 = d.read(id: 2, sector: 16, [seg(3), seg(4)], hold: true)
        #expect(s2.responses.isEmpty)
        #expect(s2.mapOps.map(\.flags) == [writable, writable])
        let s3 = d.write(id: 3, sector: 32, [seg(1), seg(5)], hold: true)
        #expect(s3.mapOps.map(\.gref) == [5])
        #expect(s3.mapOps.map(\.flags) == [readOnlyMap])
        #expect(d.snapshot?.inFlight.map(\.id) == [1, 2, 3])
        #expect(d.snapshot?.inFlight.map(\.bitmap) == [0, 0b11, 0b10])
        #expect(d.liveMappings.count == 5)
        // Nothing has moved yet.
        #expect(d.diskTokens(0...0) == [Ramdisk.initialToken(sector: 0)])

        let c2 = d.complete(id: 2)
        #expect(c2.responses.map(\.id) == [2])
        #expect(c2.status(id: 2) == .okay)
        #expect(c2.unmapOps.count == 2)
        #expect(d.tokens(3) == (16...23).map { Ramdisk.initialToken(sector: $0) })
        #expect(d.liveMappings.count == 3)

        let c3 = d.complete(id: 3)
        #expect(c3.responses.map(\.id) == [3])
        #expect(c3.unmapOps.count == 1)
        #expect(d.diskTokens(32...47) == (100...107).map { UInt64($0) } + (500...507).map { UInt64($0) })

        #expect(d.diskTokens(0...0) == [Ramdisk.initialToken(sector: 0)])
        let c1 = d.complete(id: 1)
        #expect(c1.responses.map(\.id) == [1])
        #expect(c1.unmapOps.isEmpty)
        #expect(d.diskTokens(0...15) == (100...107).map { UInt64($0) } + (200...207).map { UInt64($0) })
        #expect(d.complete(id: 1).responses.isEmpty)
        #expect(d.snapshot?.inFlight.isEmpty == true)
        #expect(d.liveMappings.count == 2)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
        #expect(d.responseCount == [1: 1, 2: 1, 3: 1])
    }

    @Test func aHeldRequestWhoseMapFailsIsAnsweredAtOnce() {
        let d = Driver()
        d.connect()
        d.grant(1)
        let step = d.read(id: 1, [seg(1), seg(2)], hold: true)
        #expect(step.status(id: 1) == .error)
        #expect(d.snapshot?.inFlight.isEmpty == true)
        expectTree(d, [1])
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test(arguments: [nil, 1, 352] as [Int?])
    func disconnectAnswersInFlightRequestsBeforeUnmapping(maxPersistent: Int?) {
        let d = Driver()
        d.connect(maxPersistent: maxPersistent)
        d.grant(1...4)
        let one = d.stamp(1, token: 10)
        let two = d.stamp(2, token: 20)
        d.write(id: 1, sector: 0, [seg(1), seg(2)], hold: true)
        d.read(id: 2, sector: 100, [seg(3), seg(4, 0, 0)], hold: true)
        d.request(op: BlkifOperation.flushDiskcache.rawValue, id: 3, [], hold: true)
        #expect(d.snapshot?.inFlight.count == 3)
        expectTree(d, maxPersistent == 1 ? [1] : [1, 2, 3, 4])
        let step = d.disconnect()
        #expect(step.responses.map(\.id) == [1, 2, 3])
        #expect(step.responses.allSatisfy { $0.status == BlkifResponseStatus.okay.rawValue })
        #expect(d.diskTokens(0...15) == one + two)
        #expect(d.tokens(3) == (100...107).map { Ramdisk.initialToken(sector: $0) })
        #expect(d.tokens(4, 0...0) == [Ramdisk.initialToken(sector: 108)])
        #expect(!d.isConnected)
        #expect(d.liveMappings.isEmpty)
        #expect(d.liveAllocations.isEmpty)
        // No unmapInUse, accessUnmapped or use after free.
        #expect(d.findings.isEmpty, "\(d.findings)")
    }
}

@Suite struct DataTests {
    @Test(arguments: BlkifProtocol.allCases)
    func dataWrittenThroughPersistentGrantsReadsBack(proto: BlkifProtocol) {
        let d = Driver()
        d.connect(proto: proto)
        #expect(d.snapshot?.maxPersistent == 352)
        d.grant(1...8)
        let a = d.stamp(1, token: 0x1000)
        let b = d.stamp(2, 2...5, token: 0x2000)
        let c = d.stamp(3, token: 0x3000)
        let e = d.stamp(4, 0...0, token: 0x4000)
        let id: UInt64 = 0x1122_3344_5566_7788
        let w = d.write(id: id, sector: 64, [seg(1), seg(2, 2, 5), seg(3), seg(4, 0, 0)])
        #expect(w.responses == [BlkifResponse(id: id, operation: opWrite, status: 0)])
        #expect(d.diskTokens(64...84) == a + b + c + e)

        // Into fresh persistent grants...
        let r = d.read(id: id &+ 1, sector: 64, [seg(5), seg(6, 2, 5), seg(7), seg(8, 0, 0)])
        #expect(r.responses == [BlkifResponse(id: id &+ 1, operation: opRead, status: 0)])
        #expect(r.mapOps.map(\.gref) == [5, 6, 7, 8])
        #expect(d.tokens(5) == a)
        #expect(d.tokens(6, 2...5) == b)
        #expect(d.tokens(6, 0...1) == [0, 0])
        #expect(d.tokens(7) == c)
        #expect(d.tokens(8, 0...0) == e)

        // ...and back into the first ones, now persistent hits, in another order.
        for gref in GrantRef(1)...4 { d.stamp(gref, token: 0) }
        let again = d.read(id: 3, sector: 64, [seg(4), seg(3, 0, 3)])
        #expect(again.mapBatches.isEmpty)
        #expect(d.tokens(4) == a)
        #expect(d.tokens(3, 0...3) == b)
        // Sectors never written read back as the disk's initial tokens.
        d.read(id: 4, sector: 1000, [seg(1)])
        #expect(d.tokens(1) == (1000...1007).map { Ramdisk.initialToken(sector: $0) })
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test(arguments: BlkifProtocol.allCases)
    func dataMovesWithoutPersistentGrantsToo(proto: BlkifProtocol) {
        let d = Driver()
        d.connect(persistent: false, proto: proto)
        d.grant(1...2)
        let a = d.stamp(1, token: 77)
        #expect(d.write(id: 1, sector: 5, [seg(1)]).status(id: 1) == .okay)
        #expect(d.read(id: 2, sector: 5, [seg(2)]).status(id: 2) == .okay)
        #expect(d.tokens(2) == a)
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }

    @Test func discardAndBarrier() {
        let d = Driver()
        d.connect(flush: true, discard: true)
        d.grant(1...2)
        let a = d.stamp(1, token: 300)
        #expect(d.request(op: BlkifOperation.writeBarrier.rawValue, id: 1, sector: 8, [seg(1)]).status(id: 1) == .okay)
        #expect(d.diskTokens(8...15) == a)
        #expect(d.discard(id: 2, sector: 10, count: 2).status(id: 2) == .okay)
        d.read(id: 3, sector: 8, [seg(2)])
        #expect(d.tokens(2) == [a[0], a[1], Ramdisk.initialToken(sector: 10), Ramdisk.initialToken(sector: 11)] + Array(a[4...7]))
        expectTree(d, [1, 2])
        d.disconnect()
        expectNothingLeft(d)
        #expect(d.findings.isEmpty, "\(d.findings)")
    }
}

@Suite struct VariantNameTests {
    @Test func namesRoundTrip() throws {
        #expect(try BackendVariant(name: "seed") == .seed)
        #expect(try BackendVariant(name: "fixed") == .fixed)
        for quirk in Generation.g2012.quirks {
            let variant = try BackendVariant(name: "fixed+" + quirk.rawValue)
            #expect(variant.quirks == [quirk])
            #expect(variant.name == "fixed+" + quirk.rawValue)
        }
        #expect(BackendVariant.seed.name == "seed")
        #expect(throws: BackendVariant.NameError.unknown(name: "bogus")) { try BackendVariant(name: "bogus") }
        #expect(throws: BackendVariant.NameError.unknownQuirk(name: "fixed+nope", quirk: "nope")) {
            try BackendVariant(name: "fixed+nope")
        }
    }

    /// `has` answers from a bit mask: each quirk has a bit of its own, and
    /// variants named or built from a set agree on every quirk.
    @Test func hasAnswersExactlyTheChosenQuirks() throws {
        for generation in Generation.allCases {
            for quirk in generation.quirks {
                let alone = BackendVariant(generation: generation, quirks: [quirk])
                let named = try BackendVariant(name: generation.fixedName + "+" + quirk.rawValue)
                #expect(named == alone)
                for other in Quirk.allCases {
                    #expect(alone.has(other) == (other == quirk))
                    #expect(named.has(other) == (other == quirk))
                    #expect(BackendVariant.seed.has(other) == other.generations.contains(.g2012))
                    #expect(BackendVariant.linux311.has(other) == other.generations.contains(.g2013))
                    #expect(!BackendVariant.fixed.has(other) && !BackendVariant.g2013.has(other))
                }
            }
        }
        // The same quirks in two generations are two backends.
        #expect(BackendVariant(generation: .g2012, quirks: [.failedMapKeepsPage])
                != BackendVariant(generation: .g2013, quirks: [.failedMapKeepsPage]))
        let pair = BackendVariant(quirks: [.persistentKey, .freeBeforeDrain])
        #expect(Quirk.allCases.filter(pair.has) == [.persistentKey, .freeBeforeDrain])
        #expect(try BackendVariant(name: "fixed+free-before-drain+persistent-key") == pair)
    }
}

@Suite struct SeveralVbdTests {
    @Test func twoDomainsKeepSeparateTrees() {
        let a = Driver(domid: 7, vbd: 0)
        let b = Driver(sharing: a, domid: 8, vbd: 1)
        a.connect()
        b.connect(maxPersistent: 2, proto: .x86_32)
        a.grant(1...3)
        b.grant(1...3)
        #expect(a.write(id: 1, [seg(1), seg(2)]).status(id: 1) == .okay)
        #expect(b.write(id: 1, [seg(1), seg(2), seg(3)], hold: true).responses.isEmpty)
        expectTree(a, [1, 2])
        expectTree(b, [1, 2])
        #expect(a.liveMappings.count == 2)
        #expect(b.liveMappings.count == 3)
        a.disconnect()
        #expect(a.liveMappings.isEmpty)
        #expect(a.liveAllocations.isEmpty)
        // The other domain's tree is untouched.
        expectTree(b, [1, 2])
        #expect(b.snapshot?.persistentCount == 2)
        #expect(b.liveMappings.count == 3)
        #expect(b.complete(id: 1).status(id: 1) == .okay)
        #expect(b.read(id: 2, [seg(2), seg(1)]).mapBatches.isEmpty)
        b.disconnect()
        #expect(b.liveAllocations.isEmpty)
        #expect(a.xen.grants.liveMappingCount == 0)
        #expect(a.findings.isEmpty, "\(a.findings)")
        #expect(b.findings.isEmpty, "\(b.findings)")
    }

    @Test func twoVbdsOfOneDomainMapTheSameGrantEachTheirOwn() {
        let a = Driver(domid: 7, vbd: 0)
        let b = Driver(sharing: a, domid: 7, vbd: 1)
        a.connect()
        b.connect()
        a.grant(1, 2)
        let stamped = a.stamp(1, token: 40)
        #expect(a.write(id: 1, sector: 0, [seg(1)]).status(id: 1) == .okay)
        #expect(b.write(id: 1, sector: 0, [seg(1), seg(2)]).status(id: 1) == .okay)
        #expect(a.liveMappings.count == 3)
        #expect(a.diskTokens(0...7) == stamped)
        #expect(b.diskTokens(0...7) == stamped)
        a.disconnect()
        #expect(a.liveMappings.count == 2)
        #expect(a.xen.kernel.liveAllocations(of: a.owner).isEmpty)
        #expect(!a.revoke(1))
        // The other vbd's tree is untouched.
        expectTree(b, [1, 2])
        #expect(b.snapshot?.persistentCount == 2)
        b.disconnect()
        #expect(a.liveMappings.isEmpty)
        #expect(a.xen.kernel.liveAllocations(of: b.owner).isEmpty)
        #expect(a.revoke(1))
        #expect(a.findings.isEmpty, "\(a.findings)")
        #expect(b.findings.isEmpty, "\(b.findings)")
    }
}
