import Blkif
import FakeXen
import Trace

/// docs/generations.md, G2013: what each event must do when the backend
/// under test is of the 2013 rework, or of today's design (G2018), which
/// the spec gives as differences from G2013 and which the steps below take
/// from the run's generation where it differs (negotiation, purge,
/// unmapping). The checks are the same as G2012's; what differs is the
/// reference they are held to.
extension Predictor {
    /// A ring slot as a G2013 backend reads it: a read/write-layout request
    /// or an indirect one.
    enum G2013Slot {
        case direct(BlkifRequest)
        case indirect(BlkifIndirectRequest)
    }

    /// `predict` for a G2013 backend; `run` is the reference's G2013 run state.
    mutating func predictG2013(_ event: TraceEventKind, environment: EnvironmentRecord, world: some ObservedWorld,
                               run: G2013Run) {
        startEvent()
        // G2013 logs no overflow alert, and the alerts it does log
        // ("requesting a grant already in use", …) are its way of saying
        // what the reference already predicts; they are not judged.
        prediction.alerts = .unjudged
        var calls = G2013Hypercalls(environment: environment)
        var heldNow: HeldRequest?
        switch event {
        case .frontendKey(let name, let value):
            reference.setFrontendKey(name, to: value)
        case .connect(let connect):
            self.connect(connect)
        case .request(let request):
            // A `request` event is a read/write-layout request given field
            // by field; indirect requests come as `indirect` or `raw` events.
            heldNow = g2013Ring(.direct(request.blkifRequest), vbd: request.vbd, hold: request.hold, calls: &calls,
                                environment: environment, world: world, run: run)
        case .raw(let raw):
            guard let model = reference.connection(raw.vbd),
                  let request = try? model.ringProtocol.decodeRequest(raw.bytes)
            else {
                prediction.mapOps = .unjudged
                break
            }
            var slot = G2013Slot.direct(request)
            if request.operation == BlkifOperation.indirect.rawValue,
               let indirect = (try? model.ringProtocol.decodeIndirectRequest(raw.bytes)) ?? nil {
                slot = .indirect(indirect)
            }
            heldNow = g2013Ring(slot, vbd: raw.vbd, hold: raw.hold, calls: &calls, environment: environment,
                                world: world, run: run)
        case .indirect(let indirect):
            guard let model = reference.connection(indirect.vbd) else {
                prediction.mapOps = .unjudged
                break
            }
            guestWritesDescriptors(of: indirect, domid: model.domid, world: world, run: run)
            heldNow = g2013Ring(.indirect(indirect.blkifRequest), vbd: indirect.vbd, hold: indirect.hold,
                                calls: &calls, environment: environment, world: world, run: run)
        case .complete(let id, let vbd):
            prediction.completesHeldIO = true
            if let model = reference.connection(vbd), let grants = model.g2013, let request = model.release(id: id) {
                let entries = grants.heldEntries.removeValue(forKey: ObjectIdentifier(request)) ?? []
                completeG2013(request, entries: entries,
                              steps: G2013GrantSteps(model: model, grants: grants, run: run), calls: &calls)
                prediction.grantStates.append(vbd)
                recycle(consume request)
            }
        case .disconnect(let vbd):
            prediction.completesHeldIO = true
            disconnectG2013(vbd: vbd, calls: &calls, run: run)
        case .tick(let milliseconds):
            let (sum, overflow) = run.jiffies.addingReportingOverflow(milliseconds)
            run.jiffies = overflow ? .max : sum
            tickG2013(calls: &calls, run: run)
        case let .parameter(parameter, value):
            switch parameter {
            case .maxPersistentGrants: run.parameters.maxPersistentGrants = Int(value)
            case .maxBufferPages: run.parameters.maxBufferPages = Int(value)
            // G2018's; a G2013 prediction never reads them.
            case .featurePersistent: run.parameters.featurePersistent = value != 0
            case .persistentGrantUnusedSeconds: run.parameters.persistentGrantUnusedSeconds = value
            }
        case .fail(.allocNth(let nth)):
            run.allocationFaults.arm(nth: nth)
        case .write(let write):
            // An armed write is taken in when the environment says it landed.
            if write.afterReads == nil, let page = world.guestPage(domid: write.domid, gref: write.gref) {
                run.guestBytes.write(page, offset: write.offset, write.bytes)
            }
        case .grant, .revoke, .fail, .expect, .generations:
            break
        }
        if environment.readGuestBytes {
            for case .armedWriteLanded(let write) in environment.observations {
                run.guestBytes.write(write.page, offset: write.offset, write.bytes)
            }
        }
        prediction.unmaps = calls.unmapped
        prediction.unmapBatchOrder = calls.unmapBatches
        // The limit is the parameter now; lowering it leaves a larger tree
        // until a purge can shrink it (the limit then is the tree's count),
        // and `tree-contents` holds the tree to the exact set anyway.
        finishEvent(holding: heldNow, world: world, treeLimit: run.parameters.maxPersistentGrants)
    }

    /// The guest side of an `indirect` event, as trace-format.md §4.8 has
    /// it: descriptors written into the pages its domain grants, and for a
    /// write the data pages they name stamped.
    private mutating func guestWritesDescriptors(of indirect: IndirectRequestEvent, domid: DomainID,
                                                 world: some ObservedWorld, run: G2013Run) {
        for (gref, bytes) in zip(indirect.pages, IndirectSegmentPages.descriptorBytes(indirect.segments)) {
            guard let page = world.guestPage(domid: domid, gref: gref) else { continue }
            run.guestBytes.write(page, offset: 0, bytes)
        }
        guard BlkifOperation(rawValue: indirect.operation)?.isWrite == true else { return }
        for segment in indirect.segments where segment.isWellFormed {
            if let page = world.guestPage(domid: domid, gref: segment.gref) { changedPages.append(page) }
        }
    }

    // MARK: ring requests

    /// One ring slot taken by the vbd's thread: dispatched, then the
    /// thread loop. Returns the request if it is held in flight.
    private mutating func g2013Ring(_ slot: G2013Slot, vbd: UInt16, hold: Bool, calls: inout G2013Hypercalls,
                                    environment: EnvironmentRecord, world: some ObservedWorld,
                                    run: G2013Run) -> HeldRequest? {
        guard let model = reference.connection(vbd), let grants = model.g2013 else {
            prediction.mapOps = .unjudged
            return nil
        }
        treeVbd = vbd
        prediction.grantStates.append(vbd)
        let steps = G2013GrantSteps(model: model, grants: grants, run: run)
        var statistics = reference.statistics
        let held: HeldRequest? = switch slot {
        case .direct(let request):
            dispatchDirect(request, vbd: vbd, hold: hold, steps: steps, calls: &calls, statistics: &statistics,
                           world: world)
        case .indirect(let request):
            dispatchIndirect(request, vbd: vbd, hold: hold, steps: steps, calls: &calls, statistics: &statistics,
                             environment: environment, world: world)
        }
        reference.record(statistics)
        steps.runThreadLoop(calls: &calls)
        prediction.mapOps = .batches(domid: model.domid, calls.mapBatches)
        return held
    }

    /// The answer to a request that ends at dispatch.
    private mutating func answer(_ status: BlkifResponseStatus, vbd: UInt16, id: UInt64, operation: UInt8) {
        prediction.responses.append(ExpectedResponse(vbd: vbd, id: id, status: status, operation: operation))
    }

    /// A read/write-layout slot: read, write, barrier, flush, discard, or
    /// an operation G2013 does not support.
    private mutating func dispatchDirect(_ request: BlkifRequest, vbd: UInt16, hold: Bool, steps: G2013GrantSteps,
                                         calls: inout G2013Hypercalls, statistics: inout OracleStatistics,
                                         world: some ObservedWorld) -> HeldRequest? {
        let model = steps.model
        guard let operation = request.knownOperation, operation != .reserved else {
            answer(.eopnotsupp, vbd: vbd, id: request.id, operation: request.operation)
            return nil
        }
        // Operation 6 in the read/write layout (a `request` event) names no
        // indirect fields: an indirect request that cannot be parsed, so
        // an error, with the operation it was given (docs/generations.md,
        // "Decisions").
        if operation == .indirect {
            answer(.error, vbd: vbd, id: request.id, operation: request.operation)
            return nil
        }
        let segments = request.effectiveSegments
        let isRead = operation == .read
        segmentScratch.removeAll(keepingCapacity: true)
        for segment in segments {
            let page = world.guestPage(domid: model.domid, gref: segment.gref)
            var tokens = SIMD8<UInt64>()
            if let page {
                if operation.isWrite { changedPages.append(page) }
                if !isRead { tokens = world.guestTokens(page) }
            }
            segmentScratch.append(SegmentIO(firstSect: segment.firstSect, lastSect: segment.lastSect, page: page,
                                            tokens: tokens))
        }
        if request.isDiscard {
            // The range first (`xen_vbd_translate`, which checks it only
            // when there are sectors), then whether the device discards at
            // all (`blkdev_issue_discard`'s EOPNOTSUPP).
            let (end, overflow) = request.sectorNumber.addingReportingOverflow(request.discardSectors)
            let pastEnd = request.discardSectors > 0 && (overflow || end > model.sectors)
            let status: BlkifResponseStatus? = pastEnd ? .error : model.discard ? nil : .eopnotsupp
            if let status {
                answer(status, vbd: vbd, id: request.id, operation: request.operation)
                return nil
            }
            model.withDisk { disk in
                for sector in request.sectorNumber..<(request.sectorNumber + request.discardSectors) {
                    disk.erase(sector)
                    prediction.diskWrites.write(Ramdisk.initialToken(sector: sector), at: sector, in: vbd)
                }
            }
            answer(.okay, vbd: vbd, id: request.id, operation: request.operation)
            return nil
        }
        if let status = RequestValidation.status(of: request, segments: segments, in: model) {
            answer(status, vbd: vbd, id: request.id, operation: request.operation)
            return nil
        }
        return startIO(grefs: segments.map(\.gref), vbd: vbd, id: request.id, operation: request.operation,
                       isWrite: !isRead, sector: request.sectorNumber, hold: hold, steps: steps, calls: &calls,
                       statistics: &statistics)
    }

    /// The most segments an indirect request may carry (`MAX_INDIRECT_SEGMENTS`).
    static var g2013MaxIndirectSegments: Int { 256 }

    /// An indirect slot: its descriptors parsed through its mapped page,
    /// then as a read or write of those segments.
    private mutating func dispatchIndirect(_ request: BlkifIndirectRequest, vbd: UInt16, hold: Bool,
                                           steps: G2013GrantSteps, calls: inout G2013Hypercalls,
                                           statistics: inout OracleStatistics, environment: EnvironmentRecord,
                                           world: some ObservedWorld) -> HeldRequest? {
        let model = steps.model
        // The response carries the inner operation.
        let operation = request.indirectOperation
        let fail = { (predictor: inout Predictor) in
            predictor.answer(.error, vbd: vbd, id: request.id, operation: operation)
        }
        let isRead = operation == BlkifOperation.read.rawValue
        guard isRead || operation == BlkifOperation.write.rawValue else {
            fail(&self)
            return nil
        }
        let count = Int(request.nrSegments)
        guard count > 0, count <= Self.g2013MaxIndirectSegments else {
            fail(&self)
            return nil
        }
        // The descriptor page goes through the map step like data (ro: the
        // backend only reads it), and is unmapped before any I/O.
        let pageGref = request.indirectGrefs[0]
        let pageMap = steps.map([pageGref], readOnly: true, calls: &calls, statistics: &statistics)
        if pageMap.failed {
            steps.unmap(pageMap.entries, calls: &calls)
            fail(&self)
            return nil
        }
        let descriptors: [BlkifSegment]
        if let page = world.guestPage(domid: model.domid, gref: pageGref), let run = reference.g2013 {
            let before = run.guestBytes.prefix(of: page, count: count * blkifSegmentSize)
            descriptors = IndirectDescriptors.read(count: count, from: page, before: before,
                                                   observations: environment.observations)
        } else {
            descriptors = Array(repeating: BlkifSegment(gref: 0, firstSect: 0, lastSect: 0), count: count)
        }
        steps.unmap(pageMap.entries, calls: &calls)
        if descriptors.contains(where: { Int($0.lastSect) >= Blkif.sectorsPerPage || $0.lastSect < $0.firstSect }) {
            fail(&self)
            return nil
        }
        let total = descriptors.reduce(UInt64(0)) { $0 + UInt64($1.sectorCount) }
        let (end, overflow) = request.sectorNumber.addingReportingOverflow(total)
        if overflow || end > model.sectors {
            fail(&self)
            return nil
        }
        segmentScratch.removeAll(keepingCapacity: true)
        for segment in descriptors {
            let page = world.guestPage(domid: model.domid, gref: segment.gref)
            let tokens = !isRead ? page.map { world.guestTokens($0) } ?? SIMD8<UInt64>() : SIMD8<UInt64>()
            segmentScratch.append(SegmentIO(firstSect: segment.firstSect, lastSect: segment.lastSect, page: page,
                                            tokens: tokens))
        }
        return startIO(grefs: descriptors.map(\.gref), vbd: vbd, id: request.id, operation: operation,
                       isWrite: !isRead, sector: request.sectorNumber, hold: hold, steps: steps, calls: &calls,
                       statistics: &statistics)
    }

    /// A valid request's data segments mapped (`ro` unless a read); a
    /// failure unmaps what the step left and answers error, success starts
    /// the I/O, which completes now or is held. `segmentScratch` holds the
    /// segments' I/O.
    private mutating func startIO(grefs: [GrantRef], vbd: UInt16, id: UInt64, operation: UInt8, isWrite: Bool,
                                  sector: UInt64, hold: Bool, steps: G2013GrantSteps, calls: inout G2013Hypercalls,
                                  statistics: inout OracleStatistics) -> HeldRequest? {
        let mapped = steps.map(grefs, readOnly: isWrite, calls: &calls, statistics: &statistics)
        if mapped.failed {
            steps.unmap(mapped.entries, calls: &calls)
            answer(.error, vbd: vbd, id: id, operation: operation)
            return nil
        }
        var oneOffs: [GrantHandle] = []
        for case .oneOff(let handle) in mapped.entries { oneOffs.append(handle) }
        let pending = freshRequest()
        var segmentIO = pending.takeSegments()
        swap(&segmentIO, &segmentScratch)
        pending.start(vbd: vbd, id: id, operation: operation, isWrite: isWrite, sector: sector,
                      segments: consume segmentIO, oneOffHandles: oneOffs, bitmap: 0)
        if hold {
            steps.grants.heldEntries[ObjectIdentifier(pending)] = mapped.entries
            return (steps.model, pending)
        }
        completeG2013(pending, entries: mapped.entries, steps: steps, calls: &calls)
        recycle(consume pending)
        return nil
    }

    /// The request's I/O ends: data moves, the unmap step runs over its
    /// entries, and it is answered okay.
    private mutating func completeG2013(_ request: PendingRequest, entries: [G2013Entry], steps: G2013GrantSteps,
                                        calls: inout G2013Hypercalls) {
        steps.model.withDisk { disk in
            Self.moveData(of: request, disk: &disk, prediction: &prediction, changedPages: &changedPages)
        }
        steps.unmapAtCompletion(entries, calls: &calls)
        prediction.responses.append(ExpectedResponse(vbd: request.vbd, id: request.id, status: .okay,
                                                     operation: request.operation))
    }

    // MARK: time and teardown

    /// A tick: each connection's thread runs its loop once, in ascending
    /// vbd. The tree checks look at the first connection a purge changed.
    private mutating func tickG2013(calls: inout G2013Hypercalls, run: G2013Run) {
        for vbd in reference.connections.keys.sorted() {
            guard let model = reference.connection(vbd), let grants = model.g2013 else { continue }
            let before = model.version
            G2013GrantSteps(model: model, grants: grants, run: run).runThreadLoop(calls: &calls)
            if model.version != before {
                if treeVbd == nil { treeVbd = vbd }
                prediction.grantStates.append(vbd)
            }
        }
    }

    /// In-flight requests complete, oldest first; then the grants are
    /// unmapped and the pool emptied.
    private mutating func disconnectG2013(vbd: UInt16, calls: inout G2013Hypercalls, run: G2013Run) {
        guard let model = reference.connection(vbd), let grants = model.g2013 else { return }
        let steps = G2013GrantSteps(model: model, grants: grants, run: run)
        for request in model.inFlight {
            completeG2013(request, entries: grants.heldEntries.removeValue(forKey: ObjectIdentifier(request)) ?? [],
                          steps: steps,
                          calls: &calls)
        }
        steps.tearDown(calls: &calls)
        reference.setConnection(nil, vbd: vbd)
        prediction.teardown = ExpectedTeardown(vbd: vbd, domid: model.domid)
    }
}
