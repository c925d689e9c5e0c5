import Blkif
import FakeXen

extension Predictor {
    /// One ring request: validation, segment decisions, the map batch, the
    /// tree afterwards, the bitmap, the unmaps, the response. Returns the
    /// request if the event holds it in flight (the caller holds it once the
    /// event's pages are refreshed), nil if it finished or never ran.
    mutating func request(_ request: BlkifRequest, vbd: UInt16, hold: Bool, environment: EnvironmentRecord,
                          world: some ObservedWorld) -> HeldRequest? {
        prediction.mapOps = .unjudged
        guard let model = reference.connection(vbd) else { return nil }
        treeVbd = vbd
        let segments = request.effectiveSegments
        let isRead = request.operation == BlkifOperation.read.rawValue
        // The guest stamps the pages of every write before it reaches the ring,
        // whatever then becomes of the request.
        let stampsPages = request.knownOperation?.isWrite == true
        let domid = model.domid
        // Each segment with the guest page behind it, as the grants stand
        // during the event, and (unless a read) the page's tokens: one list,
        // made in one pass, which the request keeps if it runs. The world is
        // only read, and nothing here changes it, so taking the tokens now
        // sees what taking them once the request is known to run saw (a
        // request that does not run drops them); a second pass rewrote each
        // element of the list. (Made by appending: a list made through
        // `init(unsafeUninitializedCapacity:)` looked its type up at run time.)
        // Into the predictor's own list, kept with its capacity.
        segmentScratch.removeAll(keepingCapacity: true)
        for segment in segments {
            let page = world.guestPage(domid: domid, gref: segment.gref)
            var tokens = SIMD8<UInt64>()
            if let page {
                if stampsPages { changedPages.append(page) }
                if !isRead { tokens = world.guestTokens(page) }
            }
            segmentScratch.append(SegmentIO(firstSect: segment.firstSect, lastSect: segment.lastSect, page: page, tokens: tokens))
        }

        if let status = RequestValidation.status(of: request, segments: segments, in: model) {
            prediction.mapOps = .noBatch(because: "the request is invalid (answer \(status))")
            prediction.responses.append(ExpectedResponse(vbd: vbd, id: request.id,
                                                             status: status, operation: request.operation))
            return nil
        }
        if request.isDiscard {
            prediction.mapOps = .noBatch(because: "a discard maps nothing")
            model.withDisk { disk in
                for sector in request.sectorNumber..<(request.sectorNumber + request.discardSectors) {
                    disk.erase(sector)
                    prediction.diskWrites.write(Ramdisk.initialToken(sector: sector), at: sector, in: vbd)
                }
            }
            prediction.responses.append(ExpectedResponse(vbd: vbd, id: request.id,
                                                             status: .okay, operation: request.operation))
            return nil
        }

        // Into the predictor's own list, kept with its capacity from request to request.
        SegmentDecision.decide(segments, in: model, into: &decisions)
        // Empty (and never allocated) when every segment is a persistent hit.
        var ops: [ExpectedMapOp] = []
        var overflowHere = false
        for (segment, decision) in zip(segments, decisions) {
            switch decision {
            case .newPersistent: ops.append(ExpectedMapOp(gref: segment.gref, readOnly: false))
            case .oneOff(_, let overflow):
                ops.append(ExpectedMapOp(gref: segment.gref, readOnly: !isRead))
                if overflow { overflowHere = true }
            case .hit, .shares: break
            }
        }
        reference.count(decisions)
        if overflowHere && !model.alerted {
            if environment.allocationFailed {
                // The aborted request may or may not have alerted; what it did
                // decides whether the connection has alerted (`ReferenceModel.settle`).
                prediction.alerts = .noneOrOne(vbd: vbd)
            } else {
                model.alerted = true
                prediction.alerts = .one
            }
        }

        if environment.allocationFailed {
            // Nothing is mapped, the tree is as before, the request fails.
            prediction.mapOps = .noBatch(because: "an allocation failed before the batch")
            prediction.unmapBitmaps.append(ExpectedBitmap(vbd: vbd, id: request.id, bitmap: 0))
            prediction.responses.append(ExpectedResponse(vbd: vbd, id: request.id,
                                                             status: .error, operation: request.operation))
            return nil
        }
        prediction.mapOps = ops.isEmpty ? .noBatch(because: "every segment is a persistent hit")
                                        : .oneBatch(domid: model.domid, ops: ops)

        // What the hypervisor answered decides the rest: a refused op leaves
        // no mapping, and the request fails.
        var failed = false
        // Bit i: segment i's persistent map failed (or that of the segment it shares).
        var demoted: UInt16 = 0
        var oneOffHandles: [GrantHandle] = []
        for (index, decision) in decisions.enumerated() {
            switch decision {
            case .hit:
                break
            case .shares(let first):
                if demoted & (1 << first) != 0 { demoted |= 1 << index }
            case .newPersistent(let op):
                if let result = environment.mapResult(op: op), result.status == .okay {
                    model.addPersistentGrant(segments[index].gref, handle: result.handle)
                } else {
                    failed = true
                    demoted |= 1 << index
                }
            case .oneOff(let op, _):
                if let result = environment.mapResult(op: op), result.status == .okay {
                    oneOffHandles.append(result.handle)
                } else {
                    failed = true
                }
            }
        }
        // A segment whose persistent map failed is demoted to a one-off with no handle.
        var bitmap = demoted
        for (index, decision) in decisions.enumerated() {
            if case .oneOff = decision { bitmap |= 1 << index }
        }

        if failed {
            prediction.unmaps.formUnion(oneOffHandles)
            prediction.unmapBitmaps.append(ExpectedBitmap(vbd: vbd, id: request.id, bitmap: bitmap))
            prediction.responses.append(ExpectedResponse(vbd: vbd, id: request.id,
                                                             status: .error, operation: request.operation))
            return nil
        }
        // The request takes the list just built; the list of the object it
        // reuses (emptied, with its capacity) is the next request's scratch.
        let pending = freshRequest()
        var segmentIO = pending.takeSegments()
        swap(&segmentIO, &segmentScratch)
        pending.start(vbd: vbd, id: request.id, operation: request.operation, isWrite: !isRead,
                      sector: request.sectorNumber,
                      segments: consume segmentIO, oneOffHandles: oneOffHandles, bitmap: bitmap)
        if hold { return (model, pending) }
        complete(pending, in: model)
        recycle(consume pending)
        return nil
    }
}
