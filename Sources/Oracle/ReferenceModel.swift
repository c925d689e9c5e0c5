import Blkif
import FakeXen
import Trace

/// The reference's own picture of what docs/design.md §6 requires: every connection
/// as it must be, and the frontend's keys. It takes in each event and says
/// what the event must do (`predict`); it never looks at the backend.
final class ReferenceModel {
    /// Whose reference semantics the model predicts by.
    let generation: OracleGeneration
    /// What a G2013 or G2018 run keeps beyond its connections (clock,
    /// parameters, armed allocation faults, the guest's bytes); nil under
    /// G2012, which has none of them. G2018 is predicted through the G2013
    /// steps, with its own rules where docs/generations.md says G2018 differs.
    let g2013: G2013Run?

    /// Everything the reference keeps across events, in one value.
    private struct State {
        var connections: [UInt16: ConnectionModel] = [:]
        /// The same connections by vbd, for vbds below `denseVbdLimit`: the
        /// predictor looks a connection up several times per event, and the
        /// dictionary hashed the vbd each time. Longer only as far as the
        /// largest such vbd connected; `connections` stays the full list.
        var byVbd: [ConnectionModel?] = []
        /// Bumped whenever a connection is made, replaced or torn down.
        var connectionsVersion: UInt64 = 0
        /// The frontend's own xenstore keys; they persist across connects.
        var frontendKeys: [String: String] = [:]
        var statistics = OracleStatistics()
    }

    // Unchecked exclusivity: `state` is private to this final class, so only
    // the methods and getters below reach it, each in plain statements that
    // call out to nothing but value types' own methods and a connection
    // model's `alerted` (another object). So no two accesses to `state` can
    // overlap. The predictor reads the connections several times per event,
    // and the runtime check cost more than the lookups it guarded.
    @exclusivity(unchecked) private var state = State()

    /// Every connection, by vbd.
    var connections: [UInt16: ConnectionModel] { state.connections }
    /// Bumped whenever a connection is made, replaced or torn down.
    var connectionsVersion: UInt64 { state.connectionsVersion }
    var statistics: OracleStatistics { state.statistics }

    init(generation: OracleGeneration = .g2012) {
        self.generation = generation
        g2013 = generation == .g2012 ? nil : G2013Run(generation: generation)
    }

    /// The most operations one unmap hypercall may carry: 11, but under
    /// G2018, whose completion unmaps all of a request's one-offs (up to
    /// 256) at once (docs/generations.md, G2018 "Unmapping"). A property of
    /// the generation, not of an event.
    var unmapBatchLimit: Int {
        generation == .g2018 ? Predictor.g2013MaxIndirectSegments : Blkif.maxSegmentsPerRequest
    }

    /// Vbds below this are looked up by index (`State.byVbd`); 64 cover every real guest.
    private static let denseVbdLimit = 64

    /// The connection of `vbd`, if there is one.
    func connection(_ vbd: UInt16) -> ConnectionModel? {
        let index = Int(vbd)
        if index < Self.denseVbdLimit { return index < state.byVbd.count ? state.byVbd[index] : nil }
        return state.connections[vbd]
    }

    /// `vbd` gets `model` as its connection (nil: it has none any more).
    func setConnection(_ model: ConnectionModel?, vbd: UInt16) {
        state.connections[vbd] = model
        let index = Int(vbd)
        if index < Self.denseVbdLimit {
            if index >= state.byVbd.count {
                state.byVbd.append(contentsOf: repeatElement(nil, count: index + 1 - state.byVbd.count))
            }
            state.byVbd[index] = model
        }
        state.connectionsVersion &+= 1
    }

    /// The frontend's own xenstore key `name`, if it wrote one.
    func frontendKey(_ name: String) -> String? { state.frontendKeys[name] }

    func setFrontendKey(_ name: String, to value: String) { state.frontendKeys[name] = value }

    /// Counts every change to what one of the reference's connections must
    /// have mapped; each connection made for it (`setConnection`) is handed this.
    let mappedChanges = MappedChangeCounter()

    /// Moves whenever what must be mapped (`ExpectedMappings`) may have
    /// changed: a connection came or went, or one's tree or held one-offs
    /// changed (`mappedChanges`: only connections the reference holds
    /// change, so it moves exactly when the sum of their `mappedVersion`s
    /// would). Read per event without touching the connections: summing
    /// them retained and released the dictionary (and walked it) every time.
    var mappedHandlesVersion: MappedHandlesVersion {
        MappedHandlesVersion(connections: state.connectionsVersion, mappings: mappedChanges.count)
    }

    /// The alert an aborted request may or may not have printed: what it did
    /// decides whether the connection has alerted.
    func settle(_ alerts: ExpectedAlerts, seen: Int) {
        if case .noneOrOne(let vbd) = alerts, seen > 0, let model = connection(vbd) { model.alerted = true }
    }

    /// The statistics as a G2013 step counted them.
    func record(_ statistics: OracleStatistics) { state.statistics = statistics }

    func count(_ decisions: [SegmentDecision]) {
        // Counted in a local, stored once.
        var statistics = state.statistics
        for decision in decisions {
            switch decision {
            case .hit, .shares: statistics.persistentHits += 1
            case .newPersistent: statistics.newPersistent += 1
            case .oneOff(_, let overflow):
                statistics.oneOff += 1
                if overflow { statistics.overflowed += 1 }
            }
        }
        state.statistics = statistics
    }

    /// The reference's own reading of a `%u` xenstore value.
    static func scanUnsigned(_ text: String) -> UInt32? {
        var digits = Substring(text)
        while let first = digits.first, first == " " || first == "\t" || first == "\n" { digits = digits.dropFirst() }
        return UInt32(digits.prefix { ("0"..."9").contains($0) })
    }
}

/// The reference's picture of one connection: a plain map stands for
/// the tree (gref → the handle its map returned). A class, so that updating
/// one request's effects never copies the connection's disk model.
///
/// What must stay mapped (the tree and the held one-offs) changes only
/// through the methods here, so that `mappedVersion` cannot miss a change.
final class ConnectionModel {
    let domid: DomainID
    let ringProtocol: BlkifProtocol
    let persistentMode: Bool
    let limit: Int
    let sectors: UInt64
    let flush: Bool
    let discard: Bool
    /// The G2013 state of the connection's grants (flags, pool, purge
    /// clock); nil for a G2012 connection.
    let g2013: G2013ConnectionState?

    /// Everything about the connection that changes, in one value.
    private struct State {
        var tree = GrefHandleMap()
        var alerted = false
        /// Requests held in flight, in the order they were held.
        var inFlight: [PendingRequest] = []
        /// The id of each held request, in the same places as `inFlight`: a
        /// completion searches these plain numbers, not the requests behind references.
        var inFlightIDs: [UInt64] = []
        /// Guest page → how many segments of held writes take their tokens from it.
        var heldWritePages = GuestPageCounts()
        /// The disk as the reference expects it.
        var disk = DiskModel()
        /// Bumped whenever `tree` changes, so an unchanged tree need not be re-read.
        var version: UInt64 = 0
        /// Bumped whenever `mappedHandles` changes, so an unchanged expectation
        /// need not be held against the world again (see `LeakCheckMemo`).
        var mappedVersion: UInt64 = 0
    }

    // Unchecked exclusivity: `state` is private to this final class, so only
    // the methods and getters below reach it. Each reads or changes it in
    // plain statements and calls out only to value types' own methods and
    // to two closures, neither of which can reach a connection model:
    // `withDisk`'s body (the predictor moving one request's data between the
    // disk and its own prediction) and `refreshHeldWrites`'s `tokens` (the
    // world's page tokens; the world is outside this module and never sees
    // the reference). So no two accesses to `state` can overlap. The runtime
    // check cost more than the work it guarded on the per-event path.
    @exclusivity(unchecked) private var state = State()

    init(domid: DomainID, ringProtocol: BlkifProtocol, persistentMode: Bool, limit: Int,
         sectors: UInt64, flush: Bool, discard: Bool, g2013: G2013ConnectionState? = nil,
         mappedChanges: MappedChangeCounter = MappedChangeCounter()) {
        self.g2013 = g2013
        self.mappedChanges = mappedChanges
        self.domid = domid
        self.ringProtocol = ringProtocol
        self.persistentMode = persistentMode
        self.limit = limit
        self.sectors = sectors
        self.flush = flush
        self.discard = discard
    }

    /// gref → the handle its map returned.
    var tree: GrefHandleMap { state.tree }
    /// Whether the connection printed its overflow alert.
    var alerted: Bool {
        get { state.alerted }
        set { state.alerted = newValue }
    }
    /// Requests held in flight, in the order they were held.
    var inFlight: [PendingRequest] { state.inFlight }
    /// Bumped whenever `tree` changes, so an unchanged tree need not be re-read.
    var version: UInt64 { state.version }
    /// Bumped whenever `mappedHandles` changes, so an unchanged expectation
    /// need not be held against the world again (see `LeakCheckMemo`).
    var mappedVersion: UInt64 { state.mappedVersion }
    /// Told of every change to `mappedVersion`, with the other connections
    /// of the same reference (`ReferenceModel.mappedHandlesVersion`).
    private let mappedChanges: MappedChangeCounter

    /// `mappedHandles` changed.
    private func mappedHandlesChanged() {
        state.mappedVersion &+= 1
        mappedChanges.bump()
    }

    /// The handle `gref`'s persistent map returned, if it is in the tree
    /// (asked per segment, so without handing out the whole tree).
    func persistentHandle(of gref: GrantRef) -> GrantHandle? { state.tree[gref] }

    /// How many persistent grants the tree holds.
    var treeCount: Int { state.tree.count }

    /// `body` with the connection's disk, to read or change in place.
    func withDisk<Result>(_ body: (inout DiskModel) -> Result) -> Result { body(&state.disk) }

    /// A new persistent grant: `gref` is in the tree, mapped as `handle`.
    func addPersistentGrant(_ gref: GrantRef, handle: GrantHandle) {
        state.tree.set(handle, for: gref)
        state.version &+= 1
        mappedHandlesChanged()
    }

    /// `gref` leaves the tree (a G2013 purge or teardown unmapped it).
    func removePersistentGrant(_ gref: GrantRef) {
        guard state.tree.remove(gref) != nil else { return }
        state.version &+= 1
        mappedHandlesChanged()
    }

    /// The request stays in flight until its `complete` (or the disconnect).
    func hold(_ request: consuming PendingRequest) {
        state.inFlightIDs.append(request.id)
        if request.hasOneOffHandles { mappedHandlesChanged() }
        if request.isWrite { state.heldWritePages.increment(pagesOf: request.segments) }
        // Last, so the caller's reference moves into the list (no retain).
        state.inFlight.append(consume request)
    }

    /// The held request `id` completes: it is no longer in flight.
    func release(id: UInt64) -> PendingRequest? {
        guard let index = state.inFlightIDs.firstIndex(of: id) else { return nil }
        state.inFlightIDs.remove(at: index)
        let request = state.inFlight.remove(at: index)
        if request.hasOneOffHandles { mappedHandlesChanged() }
        // Every page was counted in when the request was held.
        if request.isWrite { state.heldWritePages.decrement(pagesOf: request.segments) }
        return request
    }

    /// Whether a held write takes its tokens from one of `pages`.
    func holdsWrites(from pages: [GuestPage]) -> Bool {
        !state.heldWritePages.isEmpty && pages.contains { state.heldWritePages.contains($0) }
    }

    /// The guest changed `pages`: held writes from them take their tokens
    /// afresh from `tokens(page)`.
    func refreshHeldWrites(from pages: [GuestPage], tokens: (GuestPage) -> SIMD8<UInt64>) {
        for request in state.inFlight where request.isWrite {
            request.refreshTokens(from: pages, tokens: tokens)
        }
    }

    /// Handles the connection must have mapped right now: its tree and its held one-offs.
    var mappedHandles: [GrantHandle] {
        Array(state.tree.values) + state.inFlight.flatMap(\.oneOffHandles)
    }
}

/// How many times what a reference's connections must have mapped has
/// changed: one counter the reference reads per event, where it summed
/// each connection's `mappedVersion`.
final class MappedChangeCounter {
    // Unchecked exclusivity: `count` is private to this final class; `bump`
    // changes it in one statement and the getter reads it, neither calling
    // out, so no two accesses can overlap. Bumped several times per request.
    @exclusivity(unchecked) private(set) var count: UInt64 = 0

    func bump() { count &+= 1 }
}

/// One segment of a pending request, as its I/O will move it: the lanes of
/// the page it covers, the guest page it lands in, and (for writes) the
/// tokens it takes from that page. All of a segment in one record, so a
/// request keeps one list rather than one per kind of fact.
struct SegmentIO {
    let firstSect: UInt8
    let lastSect: UInt8
    /// The guest page the segment's I/O lands in (fixed at map time); nil
    /// when the gref named no page: the segment then moves no data.
    let page: GuestPage?
    /// For writes: the page's tokens as the guest had stamped it (zeros where
    /// there is no page, or for reads, which take nothing from the page).
    var tokens: SIMD8<UInt64>

    var lanes: ClosedRange<Int> { Int(firstSect)...Int(lastSect) }
}

/// A request whose segments are mapped and whose I/O the reference expects
/// to run: held in flight until its `complete`, or finishing at once.
///
/// A class: it is handed from the request to its connection's in-flight list
/// and back out at completion, often as an optional, and a struct this large
/// was copied and destroyed (an optional one through type metadata) at each
/// step. Only the write tokens change, and only in the in-flight list.
///
/// Reused: once a request has finished and nothing else holds it, the
/// predictor keeps the object, with its segment list's capacity, for a later
/// request (`Predictor.spareRequests`), so a request allocates neither.
final class PendingRequest {
    /// What a request is, besides its segments; set whole when it starts.
    private struct Header {
        var vbd: UInt16 = 0
        var id: UInt64 = 0
        var operation: UInt8 = 0
        var isWrite = false
        var sector: UInt64 = 0
        var oneOffHandles: [GrantHandle] = []
        var bitmap: UInt16 = 0
    }

    // Unchecked exclusivity (both): private to this final class. `header` is
    // read by the getters below and replaced whole by `start`, in single
    // statements. `storedSegments` is read whole by the `segments` getter,
    // moved out and back by `takeSegments` and `start`, and changed only in
    // `refreshTokens`, one element at a time in plain statements; the
    // `tokens` closure runs between them, with no access open. So no two
    // accesses can overlap.
    @exclusivity(unchecked) private var header = Header()
    @exclusivity(unchecked) private var storedSegments: [SegmentIO] = []

    /// A request not yet started: `takeSegments`, fill the list, then `start`.
    init() {}

    init(vbd: UInt16, id: UInt64, operation: UInt8, isWrite: Bool, sector: UInt64, segments: [SegmentIO],
         oneOffHandles: [GrantHandle], bitmap: UInt16) {
        start(vbd: vbd, id: id, operation: operation, isWrite: isWrite, sector: sector, segments: segments,
              oneOffHandles: oneOffHandles, bitmap: bitmap)
    }

    /// The request becomes this one, with `segments` as its list (usually
    /// the list `takeSegments` handed out, refilled).
    func start(vbd: UInt16, id: UInt64, operation: UInt8, isWrite: Bool, sector: UInt64, segments: consuming [SegmentIO],
               oneOffHandles: [GrantHandle], bitmap: UInt16) {
        header = Header(vbd: vbd, id: id, operation: operation, isWrite: isWrite, sector: sector,
                        oneOffHandles: oneOffHandles, bitmap: bitmap)
        storedSegments = segments
    }

    /// The segment list, moved out (the request keeps an empty one) and
    /// emptied, to be refilled with its capacity for the next request.
    func takeSegments() -> [SegmentIO] {
        var segments: [SegmentIO] = []
        swap(&segments, &storedSegments)
        segments.removeAll(keepingCapacity: true)
        return segments
    }

    var vbd: UInt16 { header.vbd }
    var id: UInt64 { header.id }
    /// The request's operation byte, which its response repeats.
    var operation: UInt8 { header.operation }
    var isWrite: Bool { header.isWrite }
    var sector: UInt64 { header.sector }
    /// Handles of the one-off mappings to unmap when the I/O completes
    /// (empty, and then no allocation, for the usual persistent request).
    var oneOffHandles: [GrantHandle] { header.oneOffHandles }
    /// Whether it has one-offs, asked without handing out the list (a retain and a release).
    var hasOneOffHandles: Bool { !header.oneOffHandles.isEmpty }
    /// The unmap bitmap the backend must hold for it: one-offs and demoted segments.
    var bitmap: UInt16 { header.bitmap }

    /// Each segment's lanes, page and (for writes) tokens, in segment order.
    var segments: [SegmentIO] { storedSegments }

    /// The guest changed `pages`: segments on them take their tokens afresh from `tokens(page)`.
    func refreshTokens(from pages: [GuestPage], tokens: (GuestPage) -> SIMD8<UInt64>) {
        for index in storedSegments.indices {
            guard let page = storedSegments[index].page, pages.contains(page) else { continue }
            let fresh = tokens(page)
            storedSegments[index].tokens = fresh
        }
    }
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
    /// Into `decisions`, emptied first and kept with its capacity.
    static func decide(_ segments: [BlkifSegment], in model: ConnectionModel, into decisions: inout [SegmentDecision]) {
        decisions.removeAll(keepingCapacity: true)
        // The grefs this request maps persistently, with the first segment of
        // each: at most one per segment (11), so a list searched in order.
        var newThisRequest: [(gref: GrantRef, segment: Int)] = []
        var opCount = 0
        var treeSize = model.treeCount
        for (index, segment) in segments.enumerated() {
            if model.persistentMode && model.persistentHandle(of: segment.gref) != nil {
                decisions.append(.hit)
            } else if model.persistentMode, let first = newThisRequest.first(where: { $0.gref == segment.gref }) {
                decisions.append(.shares(segment: first.segment))
            } else if model.persistentMode && treeSize < model.limit {
                decisions.append(.newPersistent(op: opCount))
                newThisRequest.append((segment.gref, index))
                treeSize += 1
                opCount += 1
            } else {
                decisions.append(.oneOff(op: opCount, overflow: model.persistentMode))
                opCount += 1
            }
        }
    }
}

/// docs/design.md §6 validation, on the request as the backend will see it.
enum RequestValidation {
    /// `segments` is `request.effectiveSegments`, which the caller already
    /// holds (made again here, it was a list built per request).
    static func status(of request: BlkifRequest, segments: [BlkifSegment], in model: ConnectionModel) -> BlkifResponseStatus? {
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
