import Blkif
import FakeXen
import Trace

/// Works out each event's prediction, updating the reference as it goes.
///
/// Lives as long as the oracle and is reused from event to event: its
/// prediction and its list of changed pages are cleared, not made afresh,
/// so their lists keep their capacity and nothing is moved in and out.
/// Not generic over the world, and holding no per-event record: the few
/// steps that read the world or the environment take them as arguments (a
/// value stored per event was copied in and destroyed on every event).
struct Predictor {
    let reference: ReferenceModel
    /// The latest event's prediction; valid until the next `predict`.
    var prediction = Prediction()
    /// Guest pages the event changes (the guest stamped a write, a read
    /// filled a page): held writes from them take their tokens afresh. A
    /// list (repeats allowed): it is short, and only searched when a held
    /// write may take tokens from it.
    var changedPages: [GuestPage] = []
    /// The connection whose tree the event may change.
    var treeVbd: UInt16?
    /// The latest request's segment decisions: kept here, with its capacity,
    /// so deciding a request allocates nothing.
    var decisions: [SegmentDecision] = []
    /// The latest request's segments, built here before it is known to run
    /// (kept with its capacity; a request that runs takes the list and
    /// leaves the one of the request object it reuses in its place).
    var segmentScratch: [SegmentIO] = []
    /// Finished requests nothing else holds, to be reused by later ones:
    /// as many as were ever in flight at once, so a request allocates
    /// neither its object nor its segment list.
    var spareRequests: [PendingRequest] = []

    init(reference: ReferenceModel) {
        self.reference = reference
    }

    /// Works out the event's prediction into `prediction`. From the
    /// environment it reads only the map results and allocation failures;
    /// from the world only the guest's grants and pages.
    mutating func predict(_ event: TraceEventKind, environment: EnvironmentRecord, world: some ObservedWorld) {
        startEvent()
        // A request the event holds in flight. It joins its connection's held
        // requests only after `refreshHeldWrites`: it took its tokens from the
        // pages as the event left them, so there is nothing to refresh in it.
        // A local, not a stored optional: destroying a stored one went through
        // type metadata on every event.
        var heldNow: HeldRequest?
        switch event {
        case .frontendKey(let name, let value):
            reference.setFrontendKey(name, to: value)
        case .connect(let connect):
            self.connect(connect)
        case .request(let request):
            heldNow = self.request(request.blkifRequest, vbd: request.vbd, hold: request.hold,
                                   environment: environment, world: world)
        case .raw(let raw):
            guard let model = reference.connection(raw.vbd),
                  let request = try? model.ringProtocol.decodeRequest(raw.bytes)
            else {
                prediction.mapOps = .unjudged
                break
            }
            heldNow = self.request(request, vbd: raw.vbd, hold: raw.hold, environment: environment, world: world)
        case .indirect(let indirect):
            // A G2012 backend reads every slot as a read/write request (it
            // knows no BLKIF_OP_INDIRECT): the slot's bytes as it sees them.
            guard let model = reference.connection(indirect.vbd),
                  let request = try? model.ringProtocol.decodeRequest(model.ringProtocol.encode(indirect.blkifRequest))
            else {
                prediction.mapOps = .unjudged
                break
            }
            // The guest stamped the pages its descriptors name for a write.
            if BlkifOperation(rawValue: indirect.operation)?.isWrite == true {
                for segment in indirect.segments where segment.isWellFormed {
                    if let page = world.guestPage(domid: model.domid, gref: segment.gref) { changedPages.append(page) }
                }
            }
            heldNow = self.request(request, vbd: indirect.vbd, hold: indirect.hold, environment: environment, world: world)
        case .complete(let id, let vbd):
            prediction.completesHeldIO = true
            if let model = reference.connection(vbd), let request = model.release(id: id) {
                complete(request, in: model)
                recycle(consume request)
            }
        case .disconnect(let vbd):
            prediction.completesHeldIO = true
            disconnect(vbd: vbd)
        case .grant, .revoke, .fail, .expect, .write, .tick, .parameter, .generations:
            break
        }
        finishEvent(holding: heldNow, world: world, treeLimit: nil)
    }

    /// What every event's prediction starts with, in every generation.
    @inline(__always)
    mutating func startEvent() {
        prediction.clear()
        if !changedPages.isEmpty { changedPages.removeAll(keepingCapacity: true) }
        treeVbd = nil
    }

    /// What every event's prediction ends with, in every generation: held
    /// writes refreshed from the pages the event changed, the event's own
    /// held request joining its connection, the tree and the mappings
    /// expected afterwards. `treeLimit` nil is the connection's own limit.
    @inline(__always)
    mutating func finishEvent(holding heldNow: consuming HeldRequest?, world: some ObservedWorld, treeLimit: Int?) {
        // Static, with what it reads handed over: as a method of the
        // predictor, the call copied the whole predictor (264 bytes) on
        // every event, and the loads after it stalled on that copy.
        if !changedPages.isEmpty { Self.refreshHeldWrites(from: changedPages, in: reference, world: world) }
        // Handed over, not lent: lent, both references were retained for the
        // call and released after it.
        if let held = consume heldNow { held.model.hold(held.request) }
        if let vbd = treeVbd, let model = reference.connection(vbd) {
            prediction.tree = TreeExpectation(vbd: vbd, connection: model,
                                              limit: treeLimit.map { max($0, model.treeCount) })
        }
        // Replaced only when it moved (`clear` leaves it as the last event
        // set it): the same version means the same connections with the same
        // trees and held one-offs, and replacing it released one dictionary
        // and retained the same one again, two atomic operations per event.
        let version = reference.mappedHandlesVersion
        if prediction.mappedAfter.version != version {
            prediction.mappedAfter = ExpectedMappings(connections: reference.connections, version: version)
        }
    }

    /// A finished request is kept for reuse, if nothing else holds it (a
    /// held object would change under its holder when reused).
    mutating func recycle(_ request: consuming PendingRequest) {
        // The parameter itself is tested and moved into the list: copied into
        // a variable first, it was retained for the list and released after.
        if isKnownUniquelyReferenced(&request) { spareRequests.append(consume request) }
    }

    /// A request object to start: a spare one if there is one.
    mutating func freshRequest() -> PendingRequest { spareRequests.popLast() ?? PendingRequest() }

    /// A request to hold in flight, and the connection that holds it.
    typealias HeldRequest = (model: ConnectionModel, request: PendingRequest)

    // MARK: connect and disconnect

    mutating func connect(_ connect: ConnectEvent) {
        if let persistent = connect.persistent { reference.setFrontendKey("feature-persistent", to: persistent ? "1" : "0") }
        // A frontend announcing Connected again on a live vbd: xenbus ignores
        // it, so nothing changes and nothing is negotiated (the key written
        // above counts from the next real connect on).
        if reference.connection(connect.vbd) != nil {
            treeVbd = connect.vbd
            return
        }
        // The key is read as sscanf's %u would: "1", " 1" and "1\n" all mean 1.
        let frontendFeature = reference.frontendKey("feature-persistent")
        let g2013Run = reference.g2013
        // G2018 negotiates in today's form; the vbd's creation (`hotplug=`)
        // changes nothing in it, only in the 5.10 quirks.
        let negotiation = if let g2013Run, g2013Run.isG2018 {
            PersistentNegotiation.today(featureParameter: g2013Run.parameters.featurePersistent,
                                        backendPersistent: connect.backendPersistent, frontendKey: frontendFeature)
        } else {
            PersistentNegotiation.original(backendPersistent: connect.backendPersistent, frontendKey: frontendFeature)
        }
        // G2013 and G2018 ignore `max-persistent=`: their limit is the module
        // parameter, read where it is used (`limit` is the value at connect).
        reference.setConnection(ConnectionModel(
            domid: connect.domid, ringProtocol: connect.protocolName, persistentMode: negotiation.persistent,
            limit: g2013Run?.parameters.maxPersistentGrants
                ?? connect.maxPersistent ?? connect.protocolName.maxPersistentGrants,
            sectors: connect.sectors, flush: connect.flush, discard: connect.discard,
            g2013: g2013Run.map { G2013ConnectionState(tracksWasActive: !$0.isG2018) },
            mappedChanges: reference.mappedChanges), vbd: connect.vbd)
        prediction.negotiation = ExpectedNegotiation(vbd: connect.vbd, persistent: negotiation.persistent,
                                                     backendOffers: negotiation.backendOffers,
                                                     frontendFeature: frontendFeature,
                                                     advertised: negotiation.advertised,
                                                     domid: connect.domid)
        treeVbd = connect.vbd
    }

    private mutating func disconnect(vbd: UInt16) {
        guard let model = reference.connection(vbd) else { return }
        // In-flight requests complete and are answered first.
        for request in model.inFlight { complete(request, in: model) }
        prediction.unmaps.formUnion(model.tree.values)
        reference.setConnection(nil, vbd: vbd)
        prediction.teardown = ExpectedTeardown(vbd: vbd, domid: model.domid)
    }

    // MARK: I/O

    /// The I/O of a request finishes: data moves, one-offs are unmapped, it
    /// is answered. `model` is the connection of the request's vbd, which
    /// every caller holds already: looked up again here, its reference was
    /// retained and released, and that release, an atomic operation, came
    /// right after the disk model's stores and waited for them to reach memory.
    mutating func complete(_ request: PendingRequest, in model: ConnectionModel) {
        // One access to the connection's disk for the whole request, not one per segment.
        model.withDisk { disk in
            Self.moveData(of: request, disk: &disk, prediction: &prediction, changedPages: &changedPages)
        }
        // The usual persistent request has no one-offs: no union to form.
        if request.hasOneOffHandles { prediction.unmaps.formUnion(request.oneOffHandles) }
        prediction.unmapBitmaps.append(ExpectedBitmap(vbd: request.vbd, id: request.id, bitmap: request.bitmap))
        prediction.responses.append(ExpectedResponse(vbd: request.vbd, id: request.id,
                                                         status: .okay, operation: request.operation))
    }

    /// The request's data moves between the disk and the guest pages. Its
    /// segments cover consecutive sectors from `request.sector` on (each is
    /// lanes `firstSect...lastSect` of one page), so the disk side moves as
    /// one run (a write: one run per stretch of segments that have a page)
    /// rather than a segment at a time.
    static func moveData(of request: PendingRequest, disk: inout DiskModel, prediction: inout Prediction,
                                 changedPages: inout [GuestPage]) {
        // Read once: each read hands out the list (a retain and a release).
        let segments = request.segments
        if request.isWrite {
            writeSegments(segments, of: request, disk: &disk, diskWrites: &prediction.diskWrites,
                          guestWrites: prediction.guestWrites)
            return
        }
        var sectorCount = 0
        for segment in segments { sectorCount += segment.lanes.count }
        guard sectorCount > 0 else { return }
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: sectorCount) { run in
            readSegments(segments, through: run, of: request, disk: disk, prediction: &prediction,
                         changedPages: &changedPages)
        }
    }

    /// A write: each stretch of segments with a page has its lanes, from
    /// each page as it stands now, laid side by side straight into the
    /// event's disk writes, and from there into the disk at once (built on
    /// the stack first, the run was copied twice). A segment with no page
    /// writes nothing: its sectors end a stretch.
    private static func writeSegments(_ segments: [SegmentIO], of request: PendingRequest, disk: inout DiskModel,
                                      diskWrites: inout WrittenTokens<UInt16>, guestWrites: GuestPageWrites) {
        var index = 0
        // Sectors of the request before segment `index`.
        var sectorOffset = 0
        while index < segments.count {
            guard segments[index].page != nil else {
                sectorOffset += segments[index].lanes.count
                index += 1
                continue
            }
            var end = index
            var count = 0
            while end < segments.count, segments[end].page != nil {
                count += segments[end].lanes.count
                end += 1
            }
            let sector = request.sector + UInt64(sectorOffset)
            diskWrites.write(count: count, at: sector, in: request.vbd) { stretch in
                var offset = 0
                for segment in segments[index ..< end] {
                    let lanes = segment.lanes
                    // The page as it stands now: a read completing earlier in this
                    // event may have filled it since the tokens were last taken.
                    let tokens = guestWrites.overlaid(on: segment.tokens, in: segment.page!)
                    if lanes.count == 8 {
                        // The usual segment, a whole page: one store of the vector, no call to copy memory.
                        UnsafeMutableRawPointer(stretch.baseAddress! + offset).storeBytes(of: tokens, as: SIMD8<UInt64>.self)
                    } else {
                        withUnsafeBytes(of: tokens) { bytes in
                            let page = bytes.assumingMemoryBound(to: UInt64.self)
                            (stretch.baseAddress! + offset).update(from: page.baseAddress! + lanes.lowerBound,
                                                                   count: lanes.count)
                        }
                    }
                    offset += lanes.count
                }
                disk.write(UnsafeBufferPointer(stretch), at: sector)
            }
            sectorOffset += count
            index = end
        }
    }

    /// A read: the request's sectors read from the disk at once (reading
    /// has no effect, so sectors of a segment with no page may be read
    /// too), then each segment's lanes go to its page, in segment order.
    private static func readSegments(_ segments: [SegmentIO], through run: UnsafeMutableBufferPointer<UInt64>,
                                     of request: PendingRequest, disk: DiskModel, prediction: inout Prediction,
                                     changedPages: inout [GuestPage]) {
        disk.read(into: run, from: request.sector)
        var offset = 0
        for segment in segments {
            let lanes = segment.lanes
            if let page = segment.page {
                changedPages.append(page)
                var tokens = SIMD8<UInt64>()
                if lanes.count == 8 {
                    // The usual segment, a whole page: one load of the vector, no call to copy memory.
                    tokens = UnsafeRawPointer(run.baseAddress! + offset).loadUnaligned(as: SIMD8<UInt64>.self)
                } else {
                    withUnsafeMutableBytes(of: &tokens) { bytes in
                        let page = bytes.assumingMemoryBound(to: UInt64.self)
                        (page.baseAddress! + lanes.lowerBound).update(from: run.baseAddress! + offset, count: lanes.count)
                    }
                }
                prediction.guestWrites.write(tokens, lanes: lanes, in: page)
            }
            offset += lanes.count
        }
    }

    /// Data moves when the I/O completes, from the guest page as it is then:
    /// after an event that changed guest pages, held writes from those pages
    /// take their tokens afresh. (The world is read after the harness applied
    /// the event, so the pages already hold what the event put there.)
    static func refreshHeldWrites(from changedPages: [GuestPage], in reference: ReferenceModel,
                                          world: some ObservedWorld) {
        for model in reference.connections.values where model.holdsWrites(from: changedPages) {
            model.refreshHeldWrites(from: changedPages) { world.guestTokens($0) }
        }
    }
}
