import Blkif
import FakeXen
import Trace

/// The reference's own picture of what docs/design.md §6 requires: every connection
/// as it must be, and the frontend's keys. It takes in each event and says
/// what the event must do (`predict`); it never looks at the backend.
final class ReferenceModel {
    var connections: [UInt16: ConnectionModel] = [:]
    /// The frontend's own xenstore keys; they persist across connects.
    var frontendKeys: [String: String] = [:]
    var statistics = OracleStatistics()

    /// Takes in one event and returns what it must do. From the environment
    /// it reads only the map results and allocation failures; from the world
    /// only the guest's grants and pages.
    func predict(_ event: TraceEventKind, environment: EnvironmentRecord, world: some ObservedWorld) -> Prediction {
        var predictor = Predictor(reference: self, environment: environment, world: world)
        return predictor.predict(event)
    }

    /// The alert an aborted request may or may not have printed: what it did
    /// decides whether the connection has alerted.
    func settle(_ alerts: ExpectedAlerts, seen: Int) {
        if case .noneOrOne(let vbd) = alerts, seen > 0 { connections[vbd]?.alerted = true }
    }

    func count(_ decisions: [SegmentDecision]) {
        for decision in decisions {
            switch decision {
            case .hit, .shares: statistics.persistentHits += 1
            case .newPersistent: statistics.newPersistent += 1
            case .oneOff(_, let overflow):
                statistics.oneOff += 1
                if overflow { statistics.overflowed += 1 }
            }
        }
    }

    /// The reference's own reading of a `%u` xenstore value.
    static func scanUnsigned(_ text: String) -> UInt32? {
        var digits = Substring(text)
        while let first = digits.first, first == " " || first == "\t" || first == "\n" { digits = digits.dropFirst() }
        return UInt32(digits.prefix { ("0"..."9").contains($0) })
    }
}

/// The reference's picture of one connection: a plain dictionary stands for
/// the tree (gref → the handle its map returned). A class, so that updating
/// one request's effects never copies the connection's disk model.
final class ConnectionModel {
    let domid: DomainID
    let ringProtocol: BlkifProtocol
    let persistentMode: Bool
    let limit: Int
    let sectors: UInt64
    let flush: Bool
    let discard: Bool
    var tree: [GrantRef: GrantHandle] = [:]
    var alerted = false
    var inFlight: [PendingRequest] = []
    /// Disk sectors written since connect, sector → token; others read as the initial token.
    var disk: [UInt64: UInt64] = [:]
    /// Bumped whenever `tree` changes, so an unchanged tree need not be re-read.
    var version: UInt64 = 0

    init(domid: DomainID, ringProtocol: BlkifProtocol, persistentMode: Bool, limit: Int,
         sectors: UInt64, flush: Bool, discard: Bool) {
        self.domid = domid
        self.ringProtocol = ringProtocol
        self.persistentMode = persistentMode
        self.limit = limit
        self.sectors = sectors
        self.flush = flush
        self.discard = discard
    }

    func diskToken(_ sector: UInt64) -> UInt64 { disk[sector] ?? Ramdisk.initialToken(sector: sector) }

    /// Handles the connection must have mapped right now: its tree and its held one-offs.
    var mappedHandles: [GrantHandle] {
        Array(tree.values) + inFlight.flatMap(\.oneOffHandles)
    }
}

/// A request whose segments are mapped and whose I/O the reference expects
/// to run: held in flight until its `complete`, or finishing at once.
struct PendingRequest {
    let vbd: UInt16
    let id: UInt64
    let isWrite: Bool
    let sector: UInt64
    let segments: [BlkifSegment]
    /// The guest page each segment's I/O lands in (fixed at map time).
    let guestPages: [GuestPage?]
    /// Handles of the one-off mappings to unmap when the I/O completes.
    let oneOffHandles: [GrantHandle]
    /// For writes: the tokens the guest had stamped, per segment and sector.
    var writeTokens: [[UInt64]]
    /// The unmap bitmap the backend must hold for it: one-offs and demoted segments.
    let bitmap: UInt16
}

/// How the reference decides one segment (docs/design.md §6, "Segment decision").
enum SegmentDecision: Hashable {
    /// The gref is in the tree: no op.
    case hit
    /// An earlier segment of this request maps the gref persistently: no op.
    case shares(segment: Int)
    /// A new persistent grant: a writable op.
    case newPersistent(op: Int)
    /// A one-off mapping: read-only unless a read, unmapped at completion.
    /// `overflow` says it is one only because the limit was reached.
    case oneOff(op: Int, overflow: Bool)

    /// docs/design.md §6 segment decisions, in segment order.
    static func decide(_ segments: [BlkifSegment], in model: ConnectionModel) -> [SegmentDecision] {
        var decisions: [SegmentDecision] = []
        var newThisRequest: [GrantRef: Int] = [:]
        var opCount = 0
        var treeSize = model.tree.count
        for (index, segment) in segments.enumerated() {
            if model.persistentMode && model.tree[segment.gref] != nil {
                decisions.append(.hit)
            } else if model.persistentMode, let first = newThisRequest[segment.gref] {
                decisions.append(.shares(segment: first))
            } else if model.persistentMode && treeSize < model.limit {
                decisions.append(.newPersistent(op: opCount))
                newThisRequest[segment.gref] = index
                treeSize += 1
                opCount += 1
            } else {
                decisions.append(.oneOff(op: opCount, overflow: model.persistentMode))
                opCount += 1
            }
        }
        return decisions
    }
}

/// docs/design.md §6 validation, on the request as the backend will see it.
enum RequestValidation {
    static func status(of request: BlkifRequest, in model: ConnectionModel) -> BlkifResponseStatus? {
        guard let operation = request.knownOperation else { return .error }
        switch operation {
        case .reserved, .indirect:
            return .error
        case .discard:
            guard model.discard else { return .eopnotsupp }
            let (end, overflow) = request.sectorNumber.addingReportingOverflow(request.discardSectors)
            return !overflow && end <= model.sectors ? nil : .error
        case .read, .write, .writeBarrier, .flushDiskcache:
            let count = Int(request.nrSegments)
            if count > Blkif.maxSegmentsPerRequest || (count == 0 && !operation.isFlushLike) { return .error }
            let segments = request.effectiveSegments
            if segments.contains(where: { Int($0.lastSect) >= Blkif.sectorsPerPage || $0.lastSect < $0.firstSect }) {
                return .error
            }
            let total = segments.reduce(UInt64(0)) { $0 + UInt64($1.lastSect - $1.firstSect) + 1 }
            let (end, overflow) = request.sectorNumber.addingReportingOverflow(total)
            // A request that moves no sectors has no range to be past the end of.
            if total > 0 && (overflow || end > model.sectors) { return .error }
            if operation.isFlushLike && !model.flush { return .eopnotsupp }
            return nil
        }
    }
}
