import Testing
import Blkif
import FakeXen
import Backend

/// A segment covering `first...last` of the page granted under `gref`.
func seg(_ gref: GrantRef, _ first: UInt8 = 0, _ last: UInt8 = 7) -> BlkifSegment {
    BlkifSegment(gref: gref, firstSect: first, lastSect: last)
}

/// Trouble the fake environment raises by itself as it happens (its kernel, heap
/// and grant table watch every access), or a published tree that is not a
/// red-black tree by the tree's own validation. Anything subtler is for each
/// test to assert, or for the oracle to judge.
enum Defect: String, CaseIterable, Sendable {
    case panic, useAfterFree, doubleFree, accessUnmapped, unmapInUse
    /// An unmap answered with something other than okay.
    case badUnmap
    /// The published tree is not a valid red-black tree in gref order.
    case treeShape
    /// Bytes of host memory (the backend's stack) landed in the guest's ring.
    case hostBytesInRing
}

struct Finding: CustomStringConvertible, Sendable {
    let defect: Defect
    let label: String
    let detail: String
    var description: String { "[\(defect.rawValue)] \(label): \(detail)" }
}

/// What one driver action made the backend publish and the environment observe.
struct Step {
    let publications: [BackendPublication]
    let observations: [Observation]

    var responses: [BlkifResponse] {
        publications.compactMap { if case .response(_, let response) = $0 { response } else { nil } }
    }
    /// The status of this step's one response to `id`: nil when there is none, or more than
    /// one (a request is answered once, so asserting a status also asserts that).
    func status(id: UInt64) -> BlkifResponseStatus? {
        let answers = responses.filter { $0.id == id }
        guard answers.count == 1 else { return nil }
        return BlkifResponseStatus(rawValue: answers[0].status)
    }
    var mapBatches: [MapBatch] { observations.compactMap { if case .mapBatch(let batch) = $0 { batch } else { nil } } }
    var mapOps: [MapOp] { mapBatches.flatMap(\.ops) }
    var unmapBatches: [UnmapBatch] { observations.compactMap { if case .unmapBatch(let batch) = $0 { batch } else { nil } } }
    var unmapOps: [UnmapOp] { unmapBatches.flatMap(\.ops) }
    var alerts: [String] { observations.compactMap { if case .alert(let message) = $0 { message } else { nil } } }
    var allocationFailures: Int { observations.filter { if case .allocationFailed = $0 { true } else { false } }.count }
    /// `(id, bitmap)` of every `xen_blkbk_unmap` run.
    var unmapBitmaps: [(id: UInt64, bitmap: UInt16)] {
        publications.compactMap { if case .unmapping(_, let id, _, _, let bitmap) = $0 { (id, bitmap) } else { nil } }
    }
    var negotiated: Bool? {
        publications.lazy.compactMap { if case .negotiated(_, let persistent) = $0 { persistent } else { nil } }.first
    }

    /// Observations that are defects by themselves.
    func defects(label: String) -> [Finding] {
        var found: [Finding] = []
        for observation in observations {
            switch observation {
            case .panic(let message): found.append(Finding(defect: .panic, label: label, detail: message))
            case .useAfterFree(let address, let access, let what):
                found.append(Finding(defect: .useAfterFree, label: label, detail: "\(access) of \(what) at \(address)"))
            case .doubleFree(let address, let what):
                found.append(Finding(defect: .doubleFree, label: label, detail: "\(what) at \(address)"))
            case .accessUnmapped(let page, let detail):
                found.append(Finding(defect: .accessUnmapped, label: label, detail: "\(page): \(detail)"))
            case .unmapInUse(let handle, let page):
                found.append(Finding(defect: .unmapInUse, label: label, detail: "handle \(handle) at \(page)"))
            case .responseSlot(let write) where write.host != 0:
                found.append(Finding(defect: .hostBytesInRing, label: label,
                                     detail: "response slot \(write.slot): host byte mask \(write.host)"))
            case .unmapBatch(let batch):
                for (op, result) in zip(batch.ops, batch.results) where result.status != .okay {
                    found.append(Finding(defect: .badUnmap, label: label, detail: "unmap of handle \(op.handle) answered \(result.status)"))
                }
            default: break
            }
        }
        return found
    }
}

/// After a disconnect: nothing of the driver's domain and vbd is still mapped or allocated.
func expectNothingLeft(_ d: Driver, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(d.liveMappings.isEmpty, "still mapped: \(d.liveMappings)", sourceLocation: sourceLocation)
    #expect(d.liveAllocations.isEmpty, "still allocated: \(d.liveAllocations)", sourceLocation: sourceLocation)
}

/// The published tree holds exactly `grefs`, in order, each record a live
/// writable mapping of its gref.
func expectTree(_ d: Driver, _ grefs: [GrantRef], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(d.treeGrefs == grefs, sourceLocation: sourceLocation)
    #expect(d.wronglyMappedTreeRecords.isEmpty, "\(d.wronglyMappedTreeRecords)", sourceLocation: sourceLocation)
}

/// FakeXen + Blkback for one frontend domain and vbd, driven step by step.
/// After every step it collects in `findings` what the fake environment raised
/// and whether the published tree is still a red-black tree. It judges nothing
/// else: each test asserts what it expects, and judging whole runs is the oracle's.
final class Driver {
    let xen: FakeXen
    let backend: Blkback
    let domid: DomainID
    let vbd: UInt16
    private(set) var proto: BlkifProtocol = .native
    private(set) var findings: [Finding] = []
    /// How many responses each request id has had so far.
    private(set) var responseCount: [UInt64: Int] = [:]
    private(set) var connectCount = 0
    private(set) var stepCount = 0
    /// Called after every step with what it brought, for a test that watches
    /// something of its own at each step.
    var afterEveryStep: ((Driver, Step) -> Void)?

    init(_ variant: BackendVariant = .fixed, domid: DomainID = 7, vbd: UInt16 = 0) {
        xen = FakeXen()
        backend = Blkback(variant: variant, xen: xen)
        self.domid = domid
        self.vbd = vbd
    }

    /// A second frontend (another vbd) of the same backend and environment.
    init(sharing other: Driver, domid: DomainID, vbd: UInt16) {
        xen = other.xen
        backend = other.backend
        self.domid = domid
        self.vbd = vbd
    }

    var owner: AllocationOwner { AllocationOwner(domid: domid, vbd: vbd) }
    var frontendDirectory: String { Xenstore.frontendDirectory(domid: domid, vbd: vbd) }
    var backendDirectory: String { Xenstore.backendDirectory(domid: domid, vbd: vbd) }
    var isConnected: Bool { backend.isConnected(vbd: vbd) }
    var snapshot: BackendSnapshot? { backend.snapshot(vbd: vbd) }
    var tree: PublishedTree? { backend.publishedTree(vbd: vbd) }
    /// Grefs in the tree, in order.
    var treeGrefs: [GrantRef] { tree?.nodes.map(\.gref) ?? [] }
    var liveMappings: [GrantMapping] { xen.grants.liveMappings(of: domid) }
    var liveAllocations: [String] { xen.kernel.liveAllocations(of: owner) }
    /// Published tree records whose handle is not a live writable mapping of
    /// their gref for this domain at their page.
    var wronglyMappedTreeRecords: [PublishedNode] {
        (tree?.nodes ?? []).filter { node in
            guard let mapping = xen.grants.mapping(handle: node.handle) else { return true }
            return mapping.gref != node.gref || mapping.domid != domid || mapping.readOnly || mapping.hostPage != node.page
        }
    }

    // MARK: the frontend's xenstore keys and grants

    func frontendKey(_ name: String, _ value: String) { xen.xenstore.write(frontendDirectory + "/" + name, value) }
    func clearFrontendKeys() { xen.xenstore.removeDirectory(frontendDirectory) }

    func grant(_ grefs: GrantRef..., readOnly: Bool = false) { grant(grefs, readOnly: readOnly) }
    func grant(_ grefs: some Sequence<GrantRef>, readOnly: Bool = false) {
        for gref in grefs { xen.grants.grant(domid: domid, gref: gref, readOnly: readOnly) }
    }
    @discardableResult
    func revoke(_ gref: GrantRef) -> Bool {
        let accepted = xen.grants.revoke(domid: domid, gref: gref)
        _ = xen.log.drain()
        return accepted
    }

    func guestPage(_ gref: GrantRef) -> GuestPage? { xen.grants.guestPage(domid: domid, gref: gref) }
    /// Writes `token + sector` into the given sectors of a gref's page; returns what was written.
    @discardableResult
    func stamp(_ gref: GrantRef, _ sectors: ClosedRange<Int> = 0...7, token: UInt64) -> [UInt64] {
        guard let page = guestPage(gref) else { return [] }
        return sectors.map { sector in
            xen.memory.setToken(page, sector: sector, token + UInt64(sector))
            return token + UInt64(sector)
        }
    }
    func tokens(_ gref: GrantRef, _ sectors: ClosedRange<Int> = 0...7) -> [UInt64] {
        guard let page = guestPage(gref) else { return [] }
        return sectors.map { xen.memory.token(page, sector: $0) }
    }
    func diskTokens(_ sectors: ClosedRange<UInt64>) -> [UInt64] {
        guard let disk = xen.device(vbd: vbd)?.disk else { return [] }
        return sectors.map { disk.token(at: $0) }
    }

    // MARK: backend events

    /// Connects. `persistent` writes the frontend's `feature-persistent` key first (nil: keys stay as they are).
    @discardableResult
    func connect(persistent: Bool? = true, offers: Bool = true, maxPersistent: Int? = nil, proto: BlkifProtocol = .native,
                 sectors: UInt64 = 4096, flush: Bool = true, discard: Bool = false, hotplugAfter: Bool = false) -> Step {
        if let persistent { frontendKey("feature-persistent", persistent ? "1" : "0") }
        self.proto = proto
        connectCount += 1
        let parameters = ConnectParameters(domid: domid, vbd: vbd, ringProtocol: proto, offersPersistent: offers,
                                           maxPersistent: maxPersistent, sectors: sectors, flush: flush, discard: discard,
                                           hotplugAfterConnect: hotplugAfter)
        return run("connect #\(connectCount)") { backend.connect(parameters) }
    }

    /// Puts a request on the ring as the connected protocol's bytes.
    @discardableResult
    func request(_ request: BlkifRequest, hold: Bool = false) -> Step {
        let bytes = proto.encode(request)
        return run("request id=\(request.id)") { backend.submit(vbd: vbd, bytes: bytes, hold: hold) }
    }

    @discardableResult
    func request(op: UInt8, id: UInt64, sector: UInt64 = 0, _ segments: [BlkifSegment], nr: UInt8? = nil,
                 hold: Bool = false) -> Step {
        request(BlkifRequest(operation: op, nrSegments: nr, id: id, sectorNumber: sector, segments: segments), hold: hold)
    }

    @discardableResult
    func read(id: UInt64, sector: UInt64 = 0, _ segments: [BlkifSegment], hold: Bool = false) -> Step {
        request(op: BlkifOperation.read.rawValue, id: id, sector: sector, segments, hold: hold)
    }

    @discardableResult
    func write(id: UInt64, sector: UInt64 = 0, _ segments: [BlkifSegment], hold: Bool = false) -> Step {
        request(op: BlkifOperation.write.rawValue, id: id, sector: sector, segments, hold: hold)
    }

    @discardableResult
    func discard(id: UInt64, sector: UInt64, count: UInt64) -> Step {
        request(BlkifRequest(operation: BlkifOperation.discard.rawValue, nrSegments: 0, id: id, sectorNumber: sector,
                             discardSectors: count))
    }

    @discardableResult
    func complete(id: UInt64) -> Step {
        run("complete id=\(id)") { backend.complete(vbd: vbd, id: id) }
    }

    @discardableResult
    func disconnect() -> Step {
        run("disconnect") { backend.disconnect(vbd: vbd) }
    }

    // MARK: after every step

    func run(_ label: String, _ body: () -> Void) -> Step {
        stepCount += 1
        body()
        let step = Step(publications: backend.drainPublications(), observations: xen.log.drain())
        findings += step.defects(label: label)
        for response in step.responses { responseCount[response.id, default: 0] += 1 }
        if let tree {
            for problem in tree.shapeProblems {
                findings.append(Finding(defect: .treeShape, label: label, detail: problem))
            }
        }
        afterEveryStep?(self, step)
        return step
    }
}
