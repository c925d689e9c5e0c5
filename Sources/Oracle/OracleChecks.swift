import Blkif
import FakeXen
import Trace

extension ConformanceOracle {
    func checkAlerts(seen: Int) {
        if turn.uncertainAlertVbd != nil ? seen > 1 : seen != turn.alertsExpected {
            report(.overflowAlert,
                   expected: turn.alertsExpected == 1 ? "one alert: the persistent limit is reached for the first time on this connection"
                                                      : "no alert",
                   seen: "\(seen) alert(s)")
        }
    }

    func checkResponses(_ publications: [Publication]) {
        var expected = turn.responses
        for publication in publications {
            guard case let .response(vbd, response) = publication else { continue }
            guard let index = expected.firstIndex(where: { $0.vbd == vbd && $0.id == response.id }) else {
                report(.response, expected: "no response for id \(response.id) now (one per request)",
                       seen: "a response with status \(statusName(response.status))")
                continue
            }
            let want = expected.remove(at: index)
            if response.status != want.status.rawValue {
                report(.response, expected: "id \(want.id) answered \(want.status)", seen: statusName(response.status))
            }
        }
        for missing in expected {
            report(.response, expected: "id \(missing.id) answered \(missing.status)", seen: "no response")
        }
    }

    private func statusName(_ status: Int16) -> String {
        BlkifResponseStatus(rawValue: status)?.traceName ?? "\(status)"
    }

    func checkUnmappings(_ publications: [Publication]) {
        var expected = turn.unmappings
        for publication in publications {
            guard case let .unmapping(vbd, id, nrSegments, bitmap) = publication else { continue }
            if nrSegments < 16, bitmap >> nrSegments != 0 {
                report(.unmapBitmap, expected: "no bit at or beyond nr_segments \(nrSegments) (request \(id))",
                       seen: "bitmap \(bits(bitmap))")
            }
            guard let index = expected.firstIndex(where: { $0.vbd == vbd && $0.id == id }) else { continue }
            let want = expected.remove(at: index)
            if want.bitmap != bitmap {
                report(.unmapBitmap, expected: "request \(id) bitmap \(bits(want.bitmap)) (its one-off segments)",
                       seen: "bitmap \(bits(bitmap))")
            }
        }
        for missing in expected {
            report(.unmapBitmap, expected: "request \(missing.id) unmapped with bitmap \(bits(missing.bitmap))",
                   seen: "no unmap step for it")
        }
    }

    private func bits(_ bitmap: UInt16) -> String {
        let set = (0..<16).filter { bitmap & (1 << $0) != 0 }
        return set.isEmpty ? "{}" : "{" + set.map(String.init).joined(separator: ",") + "}"
    }

    func checkUnmaps(_ batches: [UnmapBatch], isTeardown: Bool) {
        var remaining = turn.unmaps
        guard !batches.isEmpty || !remaining.isEmpty else { return }
        lazy var treeHandles = Set(connections.values.flatMap(\.tree.values))
        for batch in batches {
            if batch.ops.count > Blkif.maxSegmentsPerRequest {
                report(.unmapOps, expected: "unmap batches of at most 11", seen: "a batch of \(batch.ops.count)")
            }
            for (op, result) in zip(batch.ops, batch.results) {
                guard result.status == .okay, let mapping = result.unmapped else {
                    turn.strayUnmap = true
                    report(.unmapOps, expected: "unmap only live one-off or torn-down handles",
                           seen: "unmap of handle \(op.handle) answered \(result.status)")
                    continue
                }
                if remaining.remove(op.handle) != nil { continue }
                turn.strayUnmap = true
                if treeHandles.contains(op.handle) {
                    report(.unmapOps, expected: "persistent grants stay mapped until disconnect",
                           seen: "handle \(op.handle) of persistent gref \(mapping.gref) unmapped")
                } else {
                    report(.unmapOps, expected: "unmap only handles of the requests completing now",
                           seen: "handle \(op.handle) (gref \(mapping.gref)) unmapped")
                }
            }
        }
        if !remaining.isEmpty {
            report(isTeardown ? .teardown : .unmapOps,
                   expected: "unmap of handle(s) \(remaining.sorted().map(String.init).joined(separator: ", "))",
                   seen: "not unmapped")
        }
    }

    func checkData(_ world: some ObservedWorld) {
        var wrong: [String] = []
        for (key, token) in turn.diskWrites {
            let seen = world.diskToken(vbd: key.vbd, sector: key.sector)
            if seen != token { wrong.append("disk sector \(key.sector): expected \(hex(token)), seen \(hex(seen))") }
        }
        for (key, token) in turn.guestWrites {
            let seen = world.guestToken(key.page, sector: key.sector)
            if seen != token { wrong.append("\(key.page) sector \(key.sector): expected \(hex(token)), seen \(hex(seen))") }
        }
        guard !wrong.isEmpty else { return }
        wrong.sort()
        report(.data, expected: "every token where the I/O puts it", seen: summarize(wrong, limit: 3))
    }

    private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    /// Only tree grants and the one-offs of in-flight requests stay mapped.
    /// Mappings only come and go through map and unmap batches, so an event
    /// with neither cannot have changed what is mapped.
    func checkLeaks(_ world: some ObservedWorld, batchesHappened: Bool) {
        guard batchesHappened else { return }
        let domains = Set(connections.values.map(\.domid))
        for domid in domains.sorted() {
            let expected = Set(connections.values.filter { $0.domid == domid }.flatMap(expectedMappings))
            let extra = world.liveMappings(of: domid).filter { !expected.contains($0.handle) }
            if !extra.isEmpty {
                report(.requestLeak, expected: "only persistent grants and in-flight one-offs of domain \(domid) mapped",
                       seen: "also mapped: " + summarize(extra.map { "gref \($0.gref) (handle \($0.handle))" }))
            }
        }
    }
}
