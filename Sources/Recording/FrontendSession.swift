import Backend
import Blkif
import Harness
import Oracle
import Trace
import TracePcap

/// What the frontend side of a session did, for the summaries.
public struct FrontendTally: Hashable, Sendable {
    public internal(set) var responses = 0
    /// Responses whose status is not okay (a workload should see none).
    public internal(set) var failedResponses = 0
    public internal(set) var grants = 0
    public internal(set) var revokes = 0
    public internal(set) var connects = 0
    /// The most granted pages a persistent frontend's pool ever held (one vbd's).
    public internal(set) var poolPeak = 0
    /// The most requests in flight at once on one vbd.
    public internal(set) var depthPeak = 0

    public init() {}
}

/// What the oracle found in a session: the first ones kept, and how many in all.
public struct SessionFindings: Sendable {
    public internal(set) var kept: [Violation] = []
    public internal(set) var count = 0
    public internal(set) var panicked = false
    public internal(set) var statistics = ReplayStatistics()

    public init() {}
}

/// Collects the oracle's findings (a class, so the runner's callback does not
/// hold the session).
private final class FindingLog {
    var kept: [Violation] = []
    var count = 0
}

/// One vbd's blkfront state: ring ids, requests in flight, granted pages.
struct VbdFrontend {
    struct InFlight {
        let id: UInt64
        var grefs: [GrantRef]
        /// Placed with `hold`: its ring slot stays taken until a `complete`
        /// names it, even when the backend answered it before (a failure).
        let held: Bool
        var completeSent = false
        /// Answered already, its pages taken back; waiting for its `complete`.
        var answered = false
    }

    /// blkfront's shadow free list: ids 0..<ring size, last freed first.
    var freeIDs: [UInt64]
    var inFlight: [InFlight] = []
    /// Persistent frontend: every page granted this connection, and those free now (last freed on top).
    var pool: [GrantRef] = []
    var freePool: [GrantRef] = []

    init(ringSize: Int) { freeIDs = (0..<UInt64(ringSize)).reversed() }
}

/// blkfront's side of a run, whatever decides the requests: connects vbds,
/// grants a page per segment (persistent: from a pool of pages granted
/// once and reused last-freed-first; legacy: a fresh grant per segment,
/// revoked once the response is in), places requests, completes held ones.
/// Each event is written to the sink, applied to a `TraceRunner`, and the
/// responses it produced are written after it (kind-3 packets, the
/// recording's expectations).
public final class FrontendSession {
    public let frontend: Workload.Frontend
    public let protocolName: BlkifProtocol
    public let domid: UInt16
    let sink: any TraceEventSink
    let runner: TraceRunner
    private let findings = FindingLog()
    public private(set) var tally = FrontendTally()
    private var grefs = GrefAllocator()
    private var vbds: [VbdFrontend] = []
    /// Where each connected vbd's state is in `vbds`.
    private var slotOfVbd: [UInt16: Int] = [:]

    public init(frontend: Workload.Frontend, protocolName: BlkifProtocol, domid: UInt16, sink: any TraceEventSink,
                variant: BackendVariant = .fixed, oracle: Bool = true) {
        self.frontend = frontend
        self.protocolName = protocolName
        self.domid = domid
        self.sink = sink
        runner = TraceRunner(file: sink.path, variant: variant, options: ReplayOptions(oracle: oracle))
        let findings = self.findings
        runner.onEvent = { _, found in
            findings.count += found.count
            for violation in found where findings.kept.count < 20 { findings.kept.append(violation) }
        }
    }

    var isPersistent: Bool { frontend == .persistent }
    public var hasPanicked: Bool { runner.hasPanicked }
    public var ringSize: Int { protocolName.ringSize }

    /// `vbd`'s requests in flight, oldest first: how many, and the id of each.
    public func inFlightCount(vbd: UInt16) -> Int { slotOfVbd[vbd].map { vbds[$0].inFlight.count } ?? 0 }
    public func inFlightID(vbd: UInt16, at index: Int) -> UInt64 { vbds[slotOfVbd[vbd]!].inFlight[index].id }

    /// The persistent grants the backend holds on every connected vbd.
    public var persistentGrants: Int { slotOfVbd.keys.reduce(0) { $0 + (runner.persistentCount(vbd: $1) ?? 0) } }

    /// Counters of the run so far (cheap enough to sample per request).
    public var statistics: ReplayStatistics { runner.finalReport().statistics }

    /// What the oracle found and the run's counters, now.
    public func outcome() -> SessionFindings {
        let report = runner.finalReport()
        var result = SessionFindings()
        result.kept = findings.kept
        result.count = findings.count
        result.panicked = report.panicked
        result.statistics = report.statistics
        return result
    }

    public func connect(vbd: UInt16, sectors: UInt64, discard: Bool = false) throws {
        tally.connects += 1
        // A vbd connected before keeps its shadow free list (as blkfront's
        // device does across a reconnect); only its pool was given up.
        if slotOfVbd[vbd] == nil {
            slotOfVbd[vbd] = vbds.count
            vbds.append(VbdFrontend(ringSize: ringSize))
        }
        try emit(.connect(ConnectEvent(domid: domid, protocolName: protocolName, persistent: isPersistent ? true : nil,
                                       sectors: sectors, discard: discard, vbd: vbd)))
    }

    /// The frontend closes: the backend tears down; then the persistent
    /// frontend ends foreign access to its pool (blkif_free).
    public func disconnect(vbd: UInt16) throws {
        if let count = runner.persistentCount(vbd: vbd) {
            try emit(.expect(.persistent(count: count), vbd: vbd))
        }
        try emit(.disconnect(vbd: vbd))
        guard let slot = slotOfVbd[vbd] else { return }
        let pool = vbds[slot].pool
        for range in Self.ranges(pool.sorted()) {
            tally.revokes += range.count
            try emit(.revoke(RevokeEvent(grefs: range, domid: domid)))
        }
        for gref in pool { grefs.give(gref) }
        vbds[slot].pool.removeAll()
        vbds[slot].freePool.removeAll()
    }

    /// Places one request on `vbd`'s ring with a granted page per segment;
    /// returns its id. A request not held is answered at once.
    /// With `indirect`, the segments go in a descriptor page (one more
    /// granted page, which the backend maps read-only) and the ring carries a
    /// `BLKIF_OP_INDIRECT` request: up to 256 segments, for backends from G2013 on.
    @discardableResult
    public func issue(_ plan: PlannedRequest, vbd: UInt16, hold: Bool, indirect: Bool = false) throws -> UInt64 {
        let slot = slotOfVbd[vbd]!
        let id = vbds[slot].freeIDs.removeLast()
        var segments: [BlkifSegment] = []
        var used: [GrantRef] = []
        segments.reserveCapacity(plan.segments.count)
        used.reserveCapacity(plan.segments.count)
        for shape in plan.segments {
            let gref = try page(slot: slot, readOnly: !plan.backendWritesPages)
            used.append(gref)
            segments.append(BlkifSegment(gref: gref, firstSect: shape.first, lastSect: shape.last))
        }
        var descriptorPage: GrantRef?
        if indirect {
            let gref = try page(slot: slot, readOnly: true)
            used.append(gref)
            descriptorPage = gref
        }
        vbds[slot].inFlight.append(VbdFrontend.InFlight(id: id, grefs: used, held: hold))
        tally.depthPeak = max(tally.depthPeak, vbds[slot].inFlight.count)
        if let descriptorPage {
            try emit(.indirect(IndirectRequestEvent(id: id, operation: plan.operationCode, sector: plan.sector,
                                                    segments: segments, pages: [descriptorPage], vbd: vbd, hold: hold)))
            return id
        }
        var nrSectors: UInt64?
        if case let .discard(sectors) = plan.operation { nrSectors = sectors }
        try emit(.request(RequestEvent(id: id, operation: plan.operationCode, sector: plan.sector, segments: segments,
                                       nrSectors: nrSectors, vbd: vbd, hold: hold)))
        return id
    }

    /// The device finishes a held request. One the backend answered already
    /// gives its slot and id back now (the `complete` does nothing more).
    public func complete(id: UInt64, vbd: UInt16) throws {
        if let slot = slotOfVbd[vbd], let index = vbds[slot].inFlight.firstIndex(where: { $0.id == id && !$0.completeSent }) {
            if vbds[slot].inFlight[index].answered {
                vbds[slot].inFlight.remove(at: index)
                vbds[slot].freeIDs.append(id)
            } else {
                vbds[slot].inFlight[index].completeSent = true
            }
        }
        try emit(.complete(id: id, vbd: vbd))
    }

    /// Time passes (a version-2 sink only).
    public func tick(milliseconds: UInt64) throws {
        try emit(.tick(milliseconds: milliseconds))
    }

    /// A granted page for one segment.
    private func page(slot: Int, readOnly: Bool) throws -> GrantRef {
        if isPersistent {
            // Under persistent grants every page is granted writable, once.
            if let gref = vbds[slot].freePool.popLast() { return gref }
            let gref = grefs.take()
            vbds[slot].pool.append(gref)
            tally.poolPeak = max(tally.poolPeak, vbds[slot].pool.count)
            try grant(gref, readOnly: false)
            return gref
        }
        let gref = grefs.take()
        try grant(gref, readOnly: readOnly)
        return gref
    }

    private func grant(_ gref: GrantRef, readOnly: Bool) throws {
        tally.grants += 1
        try emit(.grant(GrantEvent(grefs: gref...gref, readOnly: readOnly, domid: domid)))
    }

    /// The response is in: give the id back and the pages (persistent: to the
    /// pool, the last segment's on top; legacy: end foreign access).
    private func responded(id: UInt64, vbd: UInt16) throws {
        guard let slot = slotOfVbd[vbd],
              let index = vbds[slot].inFlight.firstIndex(where: { $0.id == id && !$0.answered }) else { return }
        let request = vbds[slot].inFlight[index]
        if request.held && !request.completeSent {
            // Answered before its complete: the pages come back now, the slot and id at the complete.
            vbds[slot].inFlight[index].answered = true
            vbds[slot].inFlight[index].grefs = []
        } else {
            vbds[slot].inFlight.remove(at: index)
            vbds[slot].freeIDs.append(request.id)
        }
        if isPersistent {
            vbds[slot].freePool.append(contentsOf: request.grefs)
            return
        }
        for gref in request.grefs {
            tally.revokes += 1
            try emit(.revoke(RevokeEvent(grefs: gref...gref, domid: domid)))
            grefs.give(gref)
        }
    }

    /// Writes an event, replays it, and records the responses it produced.
    private func emit(_ kind: TraceEventKind) throws {
        let event = TraceEvent(kind: kind, position: .packet(sink.packetCount + 1))
        try sink.write(kind)
        try runner.apply(event)
        let responses = runner.latestResponses
        guard !responses.isEmpty else { return }
        for (vbd, response) in responses {
            tally.responses += 1
            let status = BlkifResponseStatus(rawValue: response.status)
            if status != .okay { tally.failedResponses += 1 }
            guard let status else { continue }   // not a BLKIF_RSP: nothing a trace can expect
            try emit(.expect(.response(id: response.id, status: status), vbd: vbd))
        }
        for (vbd, response) in responses { try responded(id: response.id, vbd: vbd) }
    }

    /// Consecutive grefs as inclusive ranges.
    static func ranges(_ sorted: [GrantRef]) -> [ClosedRange<GrantRef>] {
        var result: [ClosedRange<GrantRef>] = []
        for gref in sorted {
            if let last = result.last, last.upperBound &+ 1 == gref {
                result[result.count - 1] = last.lowerBound...gref
            } else {
                result.append(gref...gref)
            }
        }
        return result
    }
}
