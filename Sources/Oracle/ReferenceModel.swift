import Blkif
import FakeXen

/// How the reference decides one segment (DESIGN §6, "Segment decision").
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
}

/// A request the reference expects to be in flight (held) or completing now.
struct PredictedRequest {
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

/// The reference's picture of one connection: a plain sorted set stands for
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
    var inFlight: [PredictedRequest] = []
    /// Disk sectors written since connect, sector → token; others read as the initial token.
    var disk: [UInt64: UInt64] = [:]
    /// Bumped whenever `tree` changes.
    var version: UInt64 = 0

    /// The tree version and the backend's tree version when the tree was last checked.
    var lastTreeCheck: (model: UInt64, observed: UInt64)?

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
}

/// DESIGN §6 validation, on the request as the backend will see it.
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
            let flushLike = operation == .writeBarrier || operation == .flushDiskcache
            let count = Int(request.nrSegments)
            if count > Blkif.maxSegmentsPerRequest || (count == 0 && !flushLike) { return .error }
            let segments = request.effectiveSegments
            if segments.contains(where: { Int($0.lastSect) >= Blkif.sectorsPerPage || $0.lastSect < $0.firstSect }) {
                return .error
            }
            let total = segments.reduce(UInt64(0)) { $0 + UInt64($1.lastSect - $1.firstSect) + 1 }
            let (end, overflow) = request.sectorNumber.addingReportingOverflow(total)
            // A request that moves no sectors has no range to be past the end of.
            if total > 0 && (overflow || end > model.sectors) { return .error }
            if flushLike && !model.flush { return .eopnotsupp }
            return nil
        }
    }
}
