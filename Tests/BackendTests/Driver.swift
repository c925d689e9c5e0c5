import Testing
import Blkif
import FakeXen
import Backend

/// A segment covering `first...last` of the page granted under `gref`.
func seg(_ gref: GrantRef, _ first: UInt8 = 0, _ last: UInt8 = 7) -> BlkifSegment {
    BlkifSegment(gref: gref, firstSect: first, lastSect: last)
}

/// Kinds of trouble the fake environment, or the driver's own checks, can see.
enum Defect: String, CaseIterable, Sendable {
    case panic, useAfterFree, doubleFree, accessUnmapped, unmapInUse
    /// An unmap answered with something other than okay.
    case badUnmap
    /// The published tree is not a valid red-black tree in gref order.
    case treeShape
    /// count field ≠ nodes, or over the limit.
    case treeCount
    /// A tree node is not a live writable mapping of its gref.
    case treeMapping
    /// After disconnect: something of the domain is still mapped / allocated.
    case leftoverMapping, leftoverAllocation
    /// Persistent mode differs from what the keys and the offer say.
    case negotiation
    /// A request answered twice.
    case response
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
    func status(id: UInt64) -> BlkifResponseStatus? {
        responses.first { $0.id == id }.flatMap { BlkifResponseStatus(rawValue: $0.status) }
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

/// FakeXen + Blkback for one frontend domain and vbd, driven step by step.
/// After every step it checks the published tree against the grant table
/// and collects defects in `findings`; after disconnect it checks that
/// nothing of the domain stays mapped or allocated.
final class Driver {
    let xen: FakeXen
    let backend: Blkback
    let domid: DomainID
    let vbd: UInt16
    private(set) var proto: BlkifProtocol = .native
    private(set) var findings: [Finding] = []
    private(set) var responseCount: [UInt64: Int] = [:]
    private(set) var connectCount = 0
    private(set) var stepCount = 0
    var checkEveryStep = true
    /// Off when another driver's vbd of the same domain shares the backend.
    var checkLeftoversAtDisconnect = true

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
    func findings(_ defect: Defect) -> [Finding] { findings.filter { $0.defect == defect } }

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
                 sectors: UInt64 = 4096, flush: Bool = true, discard: Bool = false) -> Step {
        if let persistent { frontendKey("feature-persistent", persistent ? "1" : "0") }
        self.proto = proto
        connectCount += 1
        let expected = offers && xen.xenstore.readUnsigned(frontendDirectory + "/feature-persistent") == 1
        let parameters = ConnectParameters(domid: domid, vbd: vbd, ringProtocol: proto, offersPersistent: offers,
                                           maxPersistent: maxPersistent, sectors: sectors, flush: flush, discard: discard)
        let step = run("connect #\(connectCount)") { backend.connect(parameters) }
        if let negotiated = step.negotiated, negotiated != expected {
            findings.append(Finding(defect: .negotiation, label: "connect #\(connectCount)",
                                    detail: "published persistent=\(negotiated), expected \(expected)"))
        }
        if let snapshot, snapshot.persistentMode != expected {
            findings.append(Finding(defect: .negotiation, label: "connect #\(connectCount)",
                                    detail: "snapshot persistentMode=\(snapshot.persistentMode), expected \(expected)"))
        }
        return step
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
        let step = run("disconnect") { backend.disconnect(vbd: vbd) }
        checkLeftovers(label: "after disconnect")
        return step
    }

    /// Everything of the domain must be gone once it is disconnected.
    func checkLeftovers(label: String) {
        guard !isConnected, checkLeftoversAtDisconnect else { return }
        for mapping in liveMappings {
            findings.append(Finding(defect: .leftoverMapping, label: label,
                                    detail: "handle \(mapping.handle) still maps gref \(mapping.gref)"))
        }
        for allocation in liveAllocations {
            findings.append(Finding(defect: .leftoverAllocation, label: label, detail: "\(allocation) still allocated"))
        }
    }

    // MARK: checks

    private func run(_ label: String, _ body: () -> Void) -> Step {
        stepCount += 1
        body()
        let step = Step(publications: backend.drainPublications(), observations: xen.log.drain())
        findings += step.defects(label: label)
        for response in step.responses {
            responseCount[response.id, default: 0] += 1
            if responseCount[response.id]! > 1 {
                findings.append(Finding(defect: .response, label: label, detail: "request \(response.id) answered again"))
            }
        }
        if checkEveryStep { checkTree(label: label) }
        return step
    }

    /// The published tree is a red-black tree in gref order whose nodes are
    /// live writable mappings of their grefs, as many as the count says.
    func checkTree(label: String) {
        guard let tree, let snapshot else { return }
        for problem in tree.shapeProblems {
            findings.append(Finding(defect: .treeShape, label: label, detail: problem))
        }
        if snapshot.persistentCount != tree.nodes.count {
            findings.append(Finding(defect: .treeCount, label: label,
                                    detail: "count \(snapshot.persistentCount) but \(tree.nodes.count) nodes"))
        }
        if tree.nodes.count > snapshot.maxPersistent {
            findings.append(Finding(defect: .treeCount, label: label,
                                    detail: "\(tree.nodes.count) nodes over the limit \(snapshot.maxPersistent)"))
        }
        var handles: Set<GrantHandle> = []
        for node in tree.nodes {
            if !handles.insert(node.handle).inserted {
                findings.append(Finding(defect: .treeMapping, label: label, detail: "handle \(node.handle) used by two nodes"))
            }
            guard let mapping = xen.grants.mapping(handle: node.handle) else {
                findings.append(Finding(defect: .treeMapping, label: label,
                                        detail: "gref \(node.gref): handle \(node.handle) maps nothing"))
                continue
            }
            if mapping.gref != node.gref || mapping.domid != domid || mapping.readOnly || mapping.hostPage != node.page {
                findings.append(Finding(defect: .treeMapping, label: label,
                                        detail: "gref \(node.gref): handle \(node.handle) maps gref \(mapping.gref) of domain \(mapping.domid)\(mapping.readOnly ? " read-only" : "") at \(mapping.hostPage), node page \(node.page.map(String.init(describing:)) ?? "none")"))
            }
        }
    }
}
