import Blkif
import FakeXen
import Trace

extension Checks {
    /// `map-ops`: outside a request there is no map hypercall. A request that
    /// maps nothing (invalid, a discard, an allocation failure first, only
    /// persistent hits) makes none; any other makes exactly one batch: one
    /// `host_map` op per segment that is neither a hit nor a repeat of a new
    /// grant, in segment order, writable for new persistent grants and
    /// read-only for the one-offs of writes.
    static func mapOps(_ prediction: Prediction, _ observed: EventObservation, into findings: inout [Finding]) {
        // Counted first: the batches are listed only for an event that ran one.
        let batchCount = observed.environment.mapBatchCount
        switch prediction.mapOps {
        case .unjudged:
            return
        case .noneOutsideRequest:
            guard batchCount > 0 else { return }
            findings.append(Finding(.mapOps, in: .mapOps, expected: "no map hypercall outside a request",
                                    seen: "\(batchCount) map batch(es)"))
        case .noBatch(let reason):
            guard batchCount > 0 else { return }
            let batches = observed.environment.mapBatches
            findings.append(Finding(.mapOps, in: .mapOps, expected: "no map hypercall: \(reason)",
                                    seen: "\(batches.count) batch(es): " + Wording.list(batches.flatMap(\.ops).map(\.description))))
        case let .oneBatch(domid, ops):
            let batches = observed.environment.mapBatches
            let describe = { (gref: GrantRef, readOnly: Bool) in
                "map gref \(gref) of domain \(domid) [\(readOnly ? "host_map|readonly" : "host_map")]"
            }
            guard batches.count == 1, let batch = batches.first else {
                let expected = ops.map { describe($0.gref, $0.readOnly) }
                findings.append(Finding(.mapOps, in: .mapOps, expected: "one batch of \(ops.count) op(s): " + Wording.list(expected),
                                        seen: batches.isEmpty ? "no map hypercall" : "\(batches.count) batches"))
                return
            }
            // Ops of the expected kind are worded as the expected ones are, so
            // only real differences show. Any other op's own wording names
            // another domain or lacks host_map, so it never reads as an
            // expected op: comparing what the words say, rather than the
            // words, leaves the strings to a batch that is wrong.
            let seenOps = batch.ops.map { op in
                op.flags.contains(.hostMap) && op.domid == domid
                    ? ExpectedMapOp(gref: op.gref, readOnly: op.flags.contains(.readOnly)) : nil
            }
            guard seenOps != ops else { return }
            let expected = ops.map { describe($0.gref, $0.readOnly) }
            let seen = zip(batch.ops, seenOps).map { op, worded in
                worded.map { describe($0.gref, $0.readOnly) } ?? op.description
            }
            let firstDifference = zip(expected, seen).enumerated().first { $0.element.0 != $0.element.1 }
            let detail = firstDifference.map { "op \($0.offset): expected \($0.element.0), seen \($0.element.1)" }
                ?? "expected \(expected.count) ops, seen \(seen.count)"
            findings.append(Finding(.mapOps, in: .mapOps, expected: Wording.list(expected),
                                    seen: Wording.list(seen) + " (\(detail))"))
        case let .batches(domid, expected):
            mapBatches(expected, of: domid, seen: observed.environment.mapBatches, into: &findings)
        }
    }

    /// G2013's `map-ops`: the event's map hypercalls are exactly the
    /// predicted batches, in order, each with its ops in order.
    private static func mapBatches(_ expected: [[ExpectedMapOp]], of domid: DomainID, seen batches: [MapBatch],
                                   into findings: inout [Finding]) {
        let describe = { (op: ExpectedMapOp) in
            "map gref \(op.gref) of domain \(domid) [\(op.readOnly ? "host_map|readonly" : "host_map")]"
        }
        // Ops of another domain or without host_map are worded as they are.
        let seen = batches.map { batch in
            batch.ops.map { op in
                op.flags.contains(.hostMap) && op.domid == domid
                    ? describe(ExpectedMapOp(gref: op.gref, readOnly: op.flags.contains(.readOnly))) : op.description
            }
        }
        let wanted = expected.map { $0.map(describe) }
        guard seen != wanted else { return }
        let sizes = { (lists: [[String]]) in lists.isEmpty ? "no map hypercall" : "\(lists.count) batch(es) of " + lists.map { "\($0.count)" }.joined(separator: ", ") }
        guard let batch = zip(wanted, seen).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset else {
            findings.append(Finding(.mapOps, in: .mapOps, expected: sizes(wanted), seen: sizes(seen)))
            return
        }
        let detail = zip(wanted[batch], seen[batch]).enumerated().first { $0.element.0 != $0.element.1 }
            .map { "op \($0.offset): expected \($0.element.0), seen \($0.element.1)" }
            ?? "expected \(wanted[batch].count) ops, seen \(seen[batch].count)"
        findings.append(Finding(.mapOps, in: .mapOps,
                                expected: sizes(wanted) + "; batch \(batch): " + Wording.list(wanted[batch]),
                                seen: sizes(seen) + "; batch \(batch): " + Wording.list(seen[batch]) + " (\(detail))"))
    }

    /// `unmap-ops`: an unmap batch holds at most `batchLimit` ops (11;
    /// G2018: 256, `ReferenceModel.unmapBatchLimit`); every op unmaps a
    /// live handle the event had to unmap (a one-off of a request that
    /// completes or fails); persistent grants stay mapped until disconnect;
    /// and every handle the event had to unmap is unmapped (at a disconnect,
    /// that last rule is `teardown`'s).
    static func unmapOps(_ prediction: Prediction, _ observed: EventObservation, batchLimit: Int = Blkif.maxSegmentsPerRequest,
                         into findings: inout [Finding]) {
        // With no unmap batch there is no op to judge (and so no surprise):
        // only what was not unmapped can be wrong. Asked first, so the usual
        // event does not copy the ledger.
        if observed.environment.unmapBatchCount == 0 && observed.unmaps.missing.isEmpty { return }
        let ledger = observed.unmaps
        lazy var persistentHandles = prediction.mappedAfter.persistentHandles()
        var surprises = ledger.surprises[...]
        // The batches are listed only for an event that ran one.
        let batches = observed.environment.unmapBatchCount > 0 ? observed.environment.unmapBatches : []
        for (index, batch) in batches.enumerated() {
            if batch.ops.count > batchLimit {
                findings.append(Finding(.unmapOps, in: .unmapOps, expected: "unmap batches of at most \(batchLimit)",
                                        seen: "a batch of \(batch.ops.count)"))
            }
            while let next = surprises.first, next.batch == index {
                surprises.removeFirst()
                switch next.surprise {
                case let .refused(handle, status):
                    findings.append(Finding(.unmapOps, in: .unmapOps, expected: "unmap only live one-off or torn-down handles",
                                            seen: "unmap of handle \(handle) answered \(status)"))
                case let .unexpected(handle, gref) where persistentHandles.contains(handle):
                    findings.append(Finding(.unmapOps, in: .unmapOps, expected: "persistent grants stay mapped until disconnect",
                                            seen: "handle \(handle) of persistent gref \(gref) unmapped"))
                case let .unexpected(handle, gref):
                    findings.append(Finding(.unmapOps, in: .unmapOps, expected: "unmap only handles of the requests completing now",
                                            seen: "handle \(handle) (gref \(gref)) unmapped"))
                }
            }
        }
        if !ledger.missing.isEmpty && prediction.teardown == nil {
            findings.append(Finding(.unmapOps, in: .unmapOps, expected: "unmap of handle(s) \(Wording.handles(ledger.missing))",
                                    seen: "not unmapped"))
        }
        // G2013 also fixes the hypercalls' order and grouping; judged only
        // when the right handles were unmapped, so a wrong handle is not
        // reported twice.
        if let order = prediction.unmapBatchOrder, ledger.missing.isEmpty, !ledger.hasSurprises {
            let seen = batches.map { $0.ops.map(\.handle) }
            if seen != order {
                let words = { (lists: [[GrantHandle]]) in
                    Wording.list(lists.map { "[" + $0.map(String.init).joined(separator: " ") + "]" })
                }
                findings.append(Finding(.unmapOps, in: .unmapOps, expected: "unmap hypercalls " + words(order),
                                        seen: words(seen)))
            }
        }
    }

    /// `unmap-bitmap`: the unmap step the backend publishes for a request
    /// has no bit at or beyond its `nr_segments`, and for every request that
    /// completes or fails it is published, with exactly the bits of the
    /// segments that were one-offs or were demoted to one-offs.
    static func unmapBitmap(_ prediction: Prediction, published publications: [Publication],
                            into findings: inout [Finding]) {
        if unmappedAsPredicted(prediction.unmapBitmaps, publications) { return }
        var expected = prediction.unmapBitmaps
        for publication in publications {
            guard case let .unmapping(vbd, id, nrSegments, bitmap) = publication else { continue }
            if nrSegments < 16, bitmap >> nrSegments != 0 {
                findings.append(Finding(.unmapBitmap, in: .unmapBitmaps,
                                        expected: "no bit at or beyond nr_segments \(nrSegments) (request \(id))",
                                        seen: "bitmap \(Wording.bits(bitmap))"))
            }
            guard let index = expected.firstIndex(where: { $0.vbd == vbd && $0.id == id }) else { continue }
            let want = expected.remove(at: index)
            if want.bitmap != bitmap {
                findings.append(Finding(.unmapBitmap, in: .unmapBitmaps,
                                        expected: "request \(id) bitmap \(Wording.bits(want.bitmap)) (its one-off segments)",
                                        seen: "bitmap \(Wording.bits(bitmap))"))
            }
        }
        for missing in expected {
            findings.append(Finding(.unmapBitmap, in: .unmapBitmaps,
                                    expected: "request \(missing.id) unmapped with bitmap \(Wording.bits(missing.bitmap))",
                                    seen: "no unmap step for it"))
        }
    }

    /// Whether the unmap steps published are exactly the predicted ones, in
    /// the predicted order, with no bit beyond `nr_segments`: then the
    /// matching in `unmapBitmap` finds each the first of those left and
    /// nothing is missing, so it finds nothing. The usual event, checked
    /// without copying the list to strike matches from it.
    private static func unmappedAsPredicted(_ expected: [ExpectedBitmap], _ publications: [Publication]) -> Bool {
        var next = 0
        for publication in publications {
            guard case let .unmapping(vbd, id, nrSegments, bitmap) = publication else { continue }
            if nrSegments < 16, bitmap >> nrSegments != 0 { return false }
            guard next < expected.count, expected[next].vbd == vbd, expected[next].id == id,
                  expected[next].bitmap == bitmap else { return false }
            next += 1
        }
        return next == expected.count
    }

    /// `request-leak`: after the event, only persistent grants and the
    /// one-offs of held requests are mapped. Mappings only come and go
    /// through map and unmap batches, and what must be mapped changes without
    /// one only when held I/O completes, so other events are not looked at;
    /// nor is a completion without batches that changed nothing since the
    /// check last passed (`LeakCheckMemo`). A domain with nothing mapped has
    /// nothing extra mapped, so its list of mappings is built only when it has some.
    static func requestLeak(_ prediction: Prediction, _ environment: EnvironmentRecord, in world: some ObservedWorld,
                            memo: inout LeakCheckMemo, into findings: inout [Finding]) {
        let batchesRan = environment.ranBatches
        guard batchesRan || prediction.completesHeldIO else { return }
        let mapped = prediction.mappedAfter
        if !batchesRan && memo.stillPasses(mapped, in: world) { return }
        let foundBefore = findings.count
        let domains = mapped.domains
        for domid in domains where world.liveMappingCount(of: domid) > 0 {
            let expected = mapped.handles(of: domid)
            let extra = world.liveMappings(of: domid).filter { !expected.contains($0.handle) }
            if !extra.isEmpty {
                findings.append(Finding(
                    .requestLeak, in: .leaks,
                    expected: "only persistent grants and in-flight one-offs of domain \(domid) mapped",
                    seen: "also mapped: " + Wording.list(extra.map { "gref \($0.gref) (handle \($0.handle))" })))
            }
        }
        if findings.count == foundBefore { memo.passed(mapped, domains: domains, in: world) } else { memo.forget() }
    }
}
