import Blkif
@testable import FakeXen
@testable import Oracle
import Trace

/// A world set up by hand: what the checks may look at, nothing more.
struct StubWorld: ObservedWorld {
    var connections: [UInt16: ObservedConnection] = [:]
    var trees: [UInt16: ObservedTree] = [:]
    var mappings: [GrantMapping] = []
    var allocations: [AllocationOwner: [String]] = [:]
    /// domid → gref → the guest page it grants.
    var grants: [DomainID: [GrantRef: GuestPage]] = [:]
    var guestTokens: [GuestPage: [Int: UInt64]] = [:]
    var diskTokens: [UInt16: [UInt64: UInt64]] = [:]
    /// The backend's xenstore keys, by vbd.
    var backendKeys: [UInt16: [String: String]] = [:]

    func connection(vbd: UInt16) -> ObservedConnection? { connections[vbd] }
    func tree(vbd: UInt16) -> ObservedTree? { trees[vbd] }
    func liveMappings(of domid: DomainID) -> [GrantMapping] { mappings.filter { $0.domid == domid } }
    func liveMappingCount(of domid: DomainID) -> Int { liveMappings(of: domid).count }
    func mapping(handle: GrantHandle) -> GrantMapping? { mappings.first { $0.handle == handle } }
    func liveAllocations(of owner: AllocationOwner) -> [String] { allocations[owner] ?? [] }
    func liveAllocationCount(of owner: AllocationOwner) -> Int { liveAllocations(of: owner).count }
    func guestPage(domid: DomainID, gref: GrantRef) -> GuestPage? { grants[domid]?[gref] }
    func backendKey(domid: DomainID, vbd: UInt16, _ name: String) -> String? { backendKeys[vbd]?[name] }
    func guestTokens(_ page: GuestPage) -> SIMD8<UInt64> {
        var tokens = SIMD8<UInt64>()
        for sector in 0..<8 { tokens[sector] = guestTokens[page]?[sector] ?? 0 }
        return tokens
    }
    func readDisk(vbd: UInt16, from first: UInt64, into tokens: UnsafeMutableBufferPointer<UInt64>) {
        for offset in tokens.indices {
            let sector = first &+ UInt64(offset)
            tokens[offset] = diskTokens[vbd]?[sector] ?? Ramdisk.initialToken(sector: sector)
        }
    }

    /// Grants `grefs` of `domid`, gref n as guest page n.
    mutating func grant(_ grefs: [GrantRef], domid: DomainID = 3) {
        for gref in grefs { grants[domid, default: [:]][gref] = GuestPage(UInt64(gref)) }
    }
}

func mapping(handle: GrantHandle, gref: GrantRef, domid: DomainID = 3, readOnly: Bool = false) -> GrantMapping {
    GrantMapping(handle: handle, domid: domid, gref: gref, guestPage: GuestPage(UInt64(gref)), readOnly: readOnly,
                 hostPage: PageFrame(0x1000 + UInt64(handle)))
}

/// A map batch whose ops all succeed, handing out `handles` in order.
func mapBatch(_ ops: [(gref: GrantRef, readOnly: Bool)], domid: DomainID = 3, handles: [GrantHandle]) -> Observation {
    .mapBatch(MapBatch(
        ops: ops.map { MapOp(hostPage: PageFrame(0), flags: $0.readOnly ? [.hostMap, .readOnly] : .hostMap,
                             gref: $0.gref, domid: domid) },
        results: handles.map { MapResult(status: .okay, handle: $0) }))
}

/// An unmap batch: each handle with what it unmapped, or nil where the hypervisor refused it.
func unmapBatch(_ ops: [(handle: GrantHandle, unmapped: GrantMapping?)]) -> Observation {
    .unmapBatch(UnmapBatch(
        ops: ops.map { UnmapOp(hostPage: PageFrame(0), handle: $0.handle) },
        results: ops.map { UnmapResult(status: $0.unmapped == nil ? .badHandle : .okay, unmapped: $0.unmapped) }))
}

func observe(_ environment: [Observation] = [], world: StubWorld = StubWorld(),
             for prediction: Prediction) -> EventObservation {
    EventObservation(environment: EnvironmentRecord(environment), world: world,
                     reading: prediction)
}

extension ExpectedResponse {
    /// A predicted response as tests name it: a read's unless said otherwise.
    init(vbd: UInt16, id: UInt64, status: BlkifResponseStatus, operation: BlkifOperation = .read) {
        self.init(vbd: vbd, id: id, status: status, operation: operation.rawValue)
    }
}

func response(vbd: UInt16 = 0, id: UInt64, _ status: BlkifResponseStatus, operation: BlkifOperation = .read) -> Publication {
    .response(vbd: vbd, BlkifResponse(id: id, operation: operation.rawValue, status: status.rawValue))
}

/// A connection model as a connect with these settings makes it, with `tree` (gref → handle) as its persistent grants.
func connectionModel(domid: DomainID = 3, persistent: Bool = true, limit: Int = 352,
                     tree: [GrantRef: GrantHandle] = [:]) -> ConnectionModel {
    let model = ConnectionModel(domid: domid, ringProtocol: .native, persistentMode: persistent, limit: limit,
                                sectors: 2_097_152, flush: true, discard: false)
    for (gref, handle) in tree.sorted(by: { $0.key < $1.key }) { model.addPersistentGrant(gref, handle: handle) }
    return model
}

func segment(_ gref: GrantRef) -> BlkifSegment { BlkifSegment(gref: gref, firstSect: 0, lastSect: 7) }

func requestEvent(id: UInt64, _ op: BlkifOperation, grefs: [GrantRef], hold: Bool = false) -> TraceEventKind {
    .request(RequestEvent(id: id, operation: op.rawValue, sector: 0, segments: grefs.map(segment), hold: hold))
}

extension ReferenceModel {
    /// Takes in one event and returns what it must do, through a predictor of
    /// its own (the oracle keeps one across events; a test asks one event at a time).
    func predict(_ event: TraceEventKind, environment: EnvironmentRecord, world: some ObservedWorld) -> Prediction {
        var predictor = Predictor(reference: self)
        if let run = g2013 {
            predictor.predictG2013(event, environment: environment, world: world, run: run)
        } else {
            predictor.predict(event, environment: environment, world: world)
        }
        return predictor.prediction
    }
}

/// What one check finds on its own, as a list (in the oracle, the checks
/// append into the event's one list).
func found(_ check: (inout [Finding]) -> Void) -> [Finding] {
    var findings: [Finding] = []
    check(&findings)
    return findings
}
