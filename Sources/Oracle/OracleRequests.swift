import Blkif
import FakeXen
import Trace

extension ConformanceOracle {
    /// Predicts and checks one ring request: validation, segment decisions,
    /// the map batch, the tree afterwards, the bitmap, unmaps, the response.
    func onRequest(vbd: UInt16, _ request: BlkifRequest, hold: Bool, mapBatches: [MapBatch],
                   allocationFailed: Bool, world: some ObservedWorld) {
        guard let model = connections[vbd] else { return }
        turn.checkTrees.insert(vbd)
        // The guest stamps the pages of every write before it reaches the ring,
        // whatever then becomes of the request.
        if let op = request.knownOperation, op == .write || op == .writeBarrier || op == .flushDiskcache {
            for segment in request.effectiveSegments {
                if let page = world.guestPage(domid: model.domid, gref: segment.gref) { turn.dirtyPages.insert(page) }
            }
        }

        if let status = RequestValidation.status(of: request, in: model) {
            expectNoBatch(mapBatches, because: "the request is invalid (answer \(status))")
            turn.responses.append(ExpectedResponse(vbd: vbd, id: request.id, status: status))
            return
        }
        if request.isDiscard {
            expectNoBatch(mapBatches, because: "a discard maps nothing")
            for sector in request.sectorNumber..<(request.sectorNumber + request.discardSectors) {
                model.disk[sector] = nil
                turn.diskWrites[DiskKey(vbd: vbd, sector: sector)] = Ramdisk.initialToken(sector: sector)
            }
            turn.responses.append(ExpectedResponse(vbd: vbd, id: request.id, status: .okay))
            return
        }

        let segments = request.effectiveSegments
        let isRead = request.operation == BlkifOperation.read.rawValue
        let decisions = decide(segments, in: model)
        let ops: [(gref: GrantRef, readOnly: Bool)] = zip(segments, decisions).compactMap { segment, decision in
            switch decision {
            case .newPersistent: (segment.gref, false)
            case .oneOff: (segment.gref, !isRead)
            case .hit, .shares: nil
            }
        }
        countStatistics(decisions)
        let overflowHere = decisions.contains { if case .oneOff(_, true) = $0 { true } else { false } }
        if overflowHere && !model.alerted {
            if allocationFailed {
                // The aborted request may or may not have alerted; what it did
                // decides whether the connection has alerted (see `check`).
                turn.uncertainAlertVbd = vbd
            } else {
                model.alerted = true
                turn.alertsExpected += 1
            }
        }

        if allocationFailed {
            // Nothing is mapped, the tree is as before, the request fails.
            expectNoBatch(mapBatches, because: "an allocation failed before the batch")
            turn.unmappings.append(ExpectedUnmapping(vbd: vbd, id: request.id, bitmap: 0))
            turn.responses.append(ExpectedResponse(vbd: vbd, id: request.id, status: .error))
            return
        }

        let results = checkBatch(ops, domid: model.domid, mapBatches)
        var failed = false
        var demoted = [Bool](repeating: false, count: segments.count)
        var oneOffHandles: [GrantHandle] = []
        for (index, decision) in decisions.enumerated() {
            switch decision {
            case .hit:
                break
            case .shares(let first):
                if demoted[first] { demoted[index] = true }
            case .newPersistent(let op):
                if let result = results[op], result.status == .okay {
                    model.tree[segments[index].gref] = result.handle
                    model.version &+= 1
                } else {
                    failed = true
                    demoted[index] = true
                }
            case .oneOff(let op, _):
                if let result = results[op], result.status == .okay {
                    oneOffHandles.append(result.handle)
                } else {
                    failed = true
                }
            }
        }
        // A segment whose persistent map failed is demoted to a one-off with no handle.
        var bitmap: UInt16 = 0
        for (index, decision) in decisions.enumerated() {
            if case .oneOff = decision { bitmap |= 1 << index }
            if demoted[index] { bitmap |= 1 << index }
        }

        if failed {
            turn.unmaps.formUnion(oneOffHandles)
            turn.unmappings.append(ExpectedUnmapping(vbd: vbd, id: request.id, bitmap: bitmap))
            turn.responses.append(ExpectedResponse(vbd: vbd, id: request.id, status: .error))
            return
        }
        let isWrite = !isRead
        let pages = segments.map { world.guestPage(domid: model.domid, gref: $0.gref) }
        let tokens: [[UInt64]] = isWrite
            ? zip(segments, pages).map { segment, page in
                guard let page else { return [] }
                return (Int(segment.firstSect)...Int(segment.lastSect)).map { world.guestToken(page, sector: $0) }
            }
            : []
        let predicted = PredictedRequest(vbd: vbd, id: request.id, isWrite: isWrite, sector: request.sectorNumber,
                                         segments: segments, guestPages: pages, oneOffHandles: oneOffHandles, writeTokens: tokens,
                                         bitmap: bitmap)
        if hold {
            model.inFlight.append(predicted)
        } else {
            completeIO(predicted, world: world)
        }
    }

    /// DESIGN §6 segment decisions, in segment order.
    func decide(_ segments: [BlkifSegment], in model: ConnectionModel) -> [SegmentDecision] {
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

    private func countStatistics(_ decisions: [SegmentDecision]) {
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

    private func expectNoBatch(_ batches: [MapBatch], because reason: String) {
        guard !batches.isEmpty else { return }
        report(.mapOps, expected: "no map hypercall: \(reason)",
               seen: "\(batches.count) batch(es): " + summarize(batches.flatMap(\.ops).map(\.description)))
    }

    /// Checks the one batch of this request; returns the per-op result the
    /// environment gave (nil where the op failed or never happened).
    private func checkBatch(_ ops: [(gref: GrantRef, readOnly: Bool)], domid: DomainID,
                            _ batches: [MapBatch]) -> [MapResult?] {
        let describe = { (gref: GrantRef, readOnly: Bool) in
            "map gref \(gref) of domain \(domid) [\(readOnly ? "host_map|readonly" : "host_map")]"
        }
        if ops.isEmpty {
            expectNoBatch(batches, because: "every segment is a persistent hit")
            return []
        }
        guard batches.count == 1, let batch = batches.first else {
            report(.mapOps, expected: "one batch of \(ops.count) op(s): " + summarize(ops.map(describe)),
                   seen: batches.isEmpty ? "no map hypercall" : "\(batches.count) batches")
            return batches.isEmpty ? Array(repeating: nil, count: ops.count) : results(of: batches.first!, count: ops.count)
        }
        let seen = batch.ops.map { op in
            op.flags.contains(.hostMap) && op.domid == domid
                ? describe(op.gref, op.flags.contains(.readOnly)) : op.description
        }
        let expected = ops.map(describe)
        if seen != expected {
            let firstDifference = zip(expected, seen).enumerated().first { $0.element.0 != $0.element.1 }
            let detail = firstDifference.map { "op \($0.offset): expected \($0.element.0), seen \($0.element.1)" }
                ?? "expected \(expected.count) ops, seen \(seen.count)"
            report(.mapOps, expected: summarize(expected), seen: summarize(seen) + " (\(detail))")
        }
        return results(of: batch, count: ops.count)
    }

    private func results(of batch: MapBatch, count: Int) -> [MapResult?] {
        (0..<count).map { index in
            guard let results = batch.results, index < results.count else { return nil }
            return results[index]
        }
    }

    /// The I/O of a request finishes: data moves, one-offs are unmapped, it is answered.
    func completeIO(_ request: PredictedRequest, world: some ObservedWorld) {
        guard let model = connections[request.vbd] else { return }
        var sector = request.sector
        for (index, segment) in request.segments.enumerated() {
            for offset in 0...Int(segment.lastSect - segment.firstSect) {
                let pageSector = Int(segment.firstSect) + offset
                if request.isWrite {
                    if index < request.writeTokens.count, offset < request.writeTokens[index].count {
                        // The page as it stands now: a read completing earlier in this
                        // event may have filled it since the tokens were last taken.
                        let earlier = request.guestPages[index].flatMap {
                            turn.guestWrites[GuestKey(page: $0, sector: pageSector)]
                        }
                        let token = earlier ?? request.writeTokens[index][offset]
                        model.disk[sector] = token
                        turn.diskWrites[DiskKey(vbd: request.vbd, sector: sector)] = token
                    }
                } else if let page = request.guestPages[index] {
                    turn.guestWrites[GuestKey(page: page, sector: pageSector)] = model.diskToken(sector)
                    turn.dirtyPages.insert(page)
                }
                sector += 1
            }
        }
        turn.unmaps.formUnion(request.oneOffHandles)
        turn.unmappings.append(ExpectedUnmapping(vbd: request.vbd, id: request.id, bitmap: request.bitmap))
        turn.responses.append(ExpectedResponse(vbd: request.vbd, id: request.id, status: .okay))
    }

    /// Data moves when the I/O completes, from the guest page as it is then:
    /// after an event that changed guest pages (the guest stamped a write, a
    /// read filled a page), held writes from those pages take their tokens afresh.
    func refreshHeldWrites(_ world: some ObservedWorld) {
        guard !turn.dirtyPages.isEmpty else { return }
        for model in connections.values {
            for (position, request) in model.inFlight.enumerated() where request.isWrite {
                for (index, (segment, page)) in zip(request.segments, request.guestPages).enumerated() {
                    guard let page, turn.dirtyPages.contains(page), index < request.writeTokens.count else { continue }
                    model.inFlight[position].writeTokens[index] =
                        (Int(segment.firstSect)...Int(segment.lastSect)).map { world.guestToken(page, sector: $0) }
                }
            }
        }
    }
}
