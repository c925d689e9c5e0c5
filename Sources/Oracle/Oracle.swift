import Blkif
import FakeXen
import Trace

/// Counts that show what persistent grants buy: hits instead of map/unmap pairs.
public struct OracleStatistics: Hashable, Sendable {
    public var persistentHits = 0
    public var newPersistent = 0
    public var oneOff = 0
    /// One-off segments caused only by the persistent limit.
    public var overflowed = 0
    public init() {}
}

/// The independent judge: its own model of what DESIGN §6 requires, checked
/// against what the environment observed and the backend published after
/// every event. It never calls into the backend.
public final class ConformanceOracle {
    var connections: [UInt16: ConnectionModel] = [:]
    /// The frontend's own xenstore keys; they persist across connects.
    var frontendKeys: [String: String] = [:]
    public internal(set) var statistics = OracleStatistics()

    /// What this event is predicted to produce, gathered while predicting.
    var turn = Turn()

    public init() {}

    struct Turn {
        var violations: [Violation] = []
        var position: TracePosition = .line(0, column: 0)
        var responses: [ExpectedResponse] = []
        /// Handles expected to be unmapped this event (one-offs of completing requests, the tree at teardown).
        var unmaps: Set<GrantHandle> = []
        var unmappings: [ExpectedUnmapping] = []
        var diskWrites: [DiskKey: UInt64] = [:]
        var guestWrites: [GuestKey: UInt64] = [:]
        var alertsExpected = 0
        /// The connection whose alert an allocation failure made unpredictable this event.
        var uncertainAlertVbd: UInt16?
        var checkTrees: Set<UInt16> = []
        /// Something was unmapped that no completing request owned: a tree
        /// mapping may be gone though no tree changed.
        var strayUnmap = false
        /// Guest pages whose contents this event changed.
        var dirtyPages: Set<GuestPage> = []
    }
    struct ExpectedResponse: Hashable { let vbd: UInt16; let id: UInt64; let status: BlkifResponseStatus }
    struct ExpectedUnmapping: Hashable { let vbd: UInt16; let id: UInt64; let bitmap: UInt16 }
    struct DiskKey: Hashable { let vbd: UInt16; let sector: UInt64 }
    struct GuestKey: Hashable { let page: GuestPage; let sector: Int }

    func report(_ check: CheckID, expected: String, seen: String) {
        turn.violations.append(Violation(check: check, position: turn.position, expected: expected, seen: seen))
    }

    /// Judges one event after the harness has applied it.
    public func check(_ event: TraceEventKind, at position: TracePosition, environment: [Observation],
                      publications: [Publication], world: some ObservedWorld) -> [Violation] {
        turn = Turn()
        turn.position = position
        var mapBatches: [MapBatch] = []
        var unmapBatches: [UnmapBatch] = []
        var allocationFailed = false
        var alerts = 0
        for observation in environment {
            switch observation {
            case .mapBatch(let batch): mapBatches.append(batch)
            case .unmapBatch(let batch): unmapBatches.append(batch)
            case .allocationFailed: allocationFailed = true
            case .alert: alerts += 1
            case .revoke: break
            case let .useAfterFree(address, access, what):
                report(.useAfterFree, expected: "no access to freed memory", seen: "\(access.rawValue) of \(what) at \(address)")
            case let .doubleFree(address, what):
                report(.doubleFree, expected: "each object freed once", seen: "second free of \(what) at \(address)")
            case .panic(let message):
                report(.panic, expected: "no BUG() reachable from a guest", seen: message)
            case let .accessUnmapped(page, detail):
                report(.accessUnmapped, expected: "I/O only through live mappings of the right kind", seen: "\(detail) (\(page))")
            case let .unmapInUse(handle, page):
                report(.unmapInUse, expected: "no unmap while I/O uses the mapping", seen: "handle \(handle) of \(page) unmapped with I/O in flight")
            }
        }

        // A panic is the host going down: nothing after it in this event means anything.
        if turn.violations.contains(where: { $0.check == .panic }) { return turn.violations }

        switch event {
        case .frontendKey(let name, let value):
            frontendKeys[name] = value
        case .connect(let connect):
            onConnect(connect, publications: publications)
        case .request(let request):
            onRequest(vbd: request.vbd, request.blkifRequest, hold: request.hold, mapBatches: mapBatches,
                      allocationFailed: allocationFailed, world: world)
        case .raw(let raw):
            guard let model = connections[raw.vbd],
                  let request = try? model.ringProtocol.decodeRequest(raw.bytes) else { break }
            onRequest(vbd: raw.vbd, request, hold: raw.hold, mapBatches: mapBatches,
                      allocationFailed: allocationFailed, world: world)
        case .complete(let id, let vbd):
            if let index = connections[vbd]?.inFlight.firstIndex(where: { $0.id == id }) {
                let request = connections[vbd]!.inFlight.remove(at: index)
                completeIO(request, world: world)
            }
        case .disconnect(let vbd):
            onDisconnect(vbd: vbd, world: world)
        case .grant, .revoke, .fail, .expect:
            break
        }

        if !event.isRequest && !mapBatches.isEmpty {
            report(.mapOps, expected: "no map hypercall outside a request", seen: "\(mapBatches.count) map batch(es)")
        }
        checkAlerts(seen: alerts)
        if alerts > 0, let vbd = turn.uncertainAlertVbd { connections[vbd]?.alerted = true }
        checkResponses(publications)
        checkUnmappings(publications)
        checkUnmaps(unmapBatches, isTeardown: event.isDisconnect)
        checkData(world)
        // Mappings change only through batches; what is expected changes when held I/O completes.
        checkLeaks(world, batchesHappened: !mapBatches.isEmpty || !unmapBatches.isEmpty || event.completesHeldIO)
        for vbd in turn.checkTrees.sorted() { checkTree(vbd: vbd, world: world, unmapsHappened: turn.strayUnmap) }
        refreshHeldWrites(world)
        return turn.violations
    }

    // MARK: connect and negotiation

    private func onConnect(_ connect: ConnectEvent, publications: [Publication]) {
        if let persistent = connect.persistent { frontendKeys["feature-persistent"] = persistent ? "1" : "0" }
        // The key is read as sscanf's %u would: "1", " 1" and "1\n" all mean 1.
        let frontendWants = frontendKeys["feature-persistent"].flatMap(Self.scanUnsigned) == 1
        let mode = connect.backendPersistent && frontendWants
        connections[connect.vbd] = ConnectionModel(
            domid: connect.domid, ringProtocol: connect.protocolName, persistentMode: mode,
            limit: connect.maxPersistent ?? connect.protocolName.maxPersistentGrants,
            sectors: connect.sectors, flush: connect.flush, discard: connect.discard)
        let seen = publications.compactMap { publication -> Bool? in
            if case let .negotiated(vbd, persistent) = publication, vbd == connect.vbd { return persistent }
            return nil
        }
        if seen != [mode] {
            report(.negotiation, expected: "persistent grants \(mode ? "on" : "off") (backend offers: \(connect.backendPersistent), frontend feature-persistent: \(frontendKeys["feature-persistent"] ?? "absent"))",
                   seen: seen.isEmpty ? "no negotiation" : seen.map { $0 ? "on" : "off" }.joined(separator: ", "))
        }
        turn.checkTrees.insert(connect.vbd)
    }

    // MARK: disconnect and teardown

    private func onDisconnect(vbd: UInt16, world: some ObservedWorld) {
        guard let model = connections[vbd] else { return }
        // In-flight requests complete and are answered first.
        for request in model.inFlight { completeIO(request, world: world) }
        turn.unmaps.formUnion(model.tree.values)
        connections[vbd] = nil
        if world.connection(vbd: vbd) != nil {
            report(.teardown, expected: "vbd \(vbd) gone after disconnect", seen: "the backend still holds it")
        }
        let stillExpected = Set(connections.values.filter { $0.domid == model.domid }.flatMap(expectedMappings))
        let left = world.liveMappings(of: model.domid).filter { !stillExpected.contains($0.handle) }
        if !left.isEmpty {
            report(.teardown, expected: "nothing of domain \(model.domid) mapped after disconnect",
                   seen: "still mapped: " + summarize(left.map { "gref \($0.gref) (handle \($0.handle))" }))
        }
        let allocated = world.liveAllocations(of: AllocationOwner(domid: model.domid, vbd: vbd))
        if !allocated.isEmpty {
            report(.teardown, expected: "nothing allocated for domain \(model.domid) vbd \(vbd) after disconnect",
                   seen: "still allocated: " + summarize(allocated))
        }
    }

    /// Handles a connection is expected to have mapped right now.
    func expectedMappings(_ model: ConnectionModel) -> [GrantHandle] {
        Array(model.tree.values) + model.inFlight.flatMap(\.oneOffHandles)
    }

    /// The reference's own reading of a `%u` xenstore value.
    static func scanUnsigned(_ text: String) -> UInt32? {
        var digits = Substring(text)
        while let first = digits.first, first == " " || first == "\t" || first == "\n" { digits = digits.dropFirst() }
        return UInt32(digits.prefix { ("0"..."9").contains($0) })
    }

    func summarize(_ items: [String], limit: Int = 6) -> String {
        let shown = items.prefix(limit).joined(separator: ", ")
        return items.count > limit ? shown + " and \(items.count - limit) more" : shown
    }
}

extension TraceEventKind {
    var isRequest: Bool {
        switch self {
        case .request, .raw: true
        default: false
        }
    }
    var completesHeldIO: Bool {
        switch self {
        case .complete, .disconnect: true
        default: false
        }
    }
    var isDisconnect: Bool {
        if case .disconnect = self { return true }
        return false
    }
}
