#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Blkif
import Trace

extension Checks {
    /// `response`: every request that finishes during the event is answered
    /// exactly once, with the status the reference predicts (invalid:
    /// error or eopnotsupp; a failed map or allocation: error; otherwise
    /// okay) and the request's own operation byte, and nothing else is answered.
    static func response(_ prediction: Prediction, published publications: [Publication], into findings: inout [Finding]) {
        if answeredAsPredicted(prediction.responses, publications) { return }
        var expected = prediction.responses
        for publication in publications {
            guard case let .response(vbd, response) = publication else { continue }
            guard let index = expected.firstIndex(where: { $0.vbd == vbd && $0.id == response.id }) else {
                findings.append(Finding(.response, in: .responses,
                                        expected: "no response for id \(response.id) now (one per request)",
                                        seen: "a response with status \(Wording.status(response.status))"))
                continue
            }
            let want = expected.remove(at: index)
            if response.status != want.status.rawValue {
                findings.append(Finding(.response, in: .responses, expected: "id \(want.id) answered \(want.status)",
                                        seen: Wording.status(response.status)))
            }
            if response.operation != want.operation {
                findings.append(Finding(.response, in: .responses,
                                        expected: "id \(want.id) answered with its operation \(want.operation)",
                                        seen: "operation \(response.operation)"))
            }
        }
        for missing in expected {
            findings.append(Finding(.response, in: .responses, expected: "id \(missing.id) answered \(missing.status)",
                                    seen: "no response"))
        }
    }

    /// Whether the responses published are exactly the predicted ones, in
    /// the predicted order: then the matching below finds each the first of
    /// those left and nothing is missing, so `response` finds nothing. The
    /// usual event, checked without copying the list to strike matches from it.
    private static func answeredAsPredicted(_ expected: [ExpectedResponse], _ publications: [Publication]) -> Bool {
        var next = 0
        for publication in publications {
            guard case let .response(vbd, response) = publication else { continue }
            guard next < expected.count, expected[next].vbd == vbd, expected[next].id == response.id,
                  expected[next].status.rawValue == response.status,
                  expected[next].operation == response.operation else { return false }
            next += 1
        }
        return next == expected.count
    }

    /// `data`: every token lands where the I/O puts it: a write's tokens on
    /// the disk sectors it covers (a discard's sectors read as new again), a
    /// read's on the guest page sectors it fills.
    static func data(_ prediction: Prediction, in world: some ObservedWorld, into findings: inout [Finding]) {
        var wrong: [String] = []
        // A run at a time and a page at a time; the order found does not
        // matter, the list is sorted.
        prediction.diskWrites.forEachRun { vbd, first, tokens, isOverwritten in
            withUnsafeTemporaryAllocation(of: UInt64.self, capacity: tokens.count) { seen in
                world.readDisk(vbd: vbd, from: first, into: seen)
                // The usual run is all as written: one comparison of memory
                // says so, before any token is looked at on its own.
                if tokens.isEmpty || memcmp(seen.baseAddress!, tokens.baseAddress!, tokens.count * MemoryLayout<UInt64>.stride) == 0 {
                    return
                }
                for offset in 0..<tokens.count where seen[offset] != tokens[offset] {
                    let sector = first &+ UInt64(offset)
                    if isOverwritten(sector) { continue }
                    wrong.append("disk sector \(sector): expected \(Wording.hex(tokens[offset])), seen \(Wording.hex(seen[offset]))")
                }
            }
        }
        for write in prediction.guestWrites.pages {
            let seen = world.guestTokens(write.page)
            // A whole page written (the usual read segment) is compared at once.
            if write.written == 0xff && seen == write.tokens { continue }
            // The written lanes compared first, through pointers to the lanes
            // (a SIMD vector indexed by a variable lane goes through memory
            // with a bounds check each time); they are named only for a page that differs.
            let differs = withUnsafeBytes(of: seen) { seenLanes in
                withUnsafeBytes(of: write.tokens) { wantedLanes in
                    let seenLanes = seenLanes.assumingMemoryBound(to: UInt64.self)
                    let wantedLanes = wantedLanes.assumingMemoryBound(to: UInt64.self)
                    var bits = write.written
                    while bits != 0 {
                        let lane = bits.trailingZeroBitCount
                        if seenLanes[lane] != wantedLanes[lane] { return true }
                        bits &= bits - 1
                    }
                    return false
                }
            }
            guard differs else { continue }
            for lane in 0..<8 where write.written & (1 << lane) != 0 && seen[lane] != write.tokens[lane] {
                wrong.append("\(write.page) sector \(lane): expected \(Wording.hex(write.tokens[lane])), seen \(Wording.hex(seen[lane]))")
            }
        }
        guard !wrong.isEmpty else { return }
        wrong.sort()
        findings.append(Finding(.data, in: .data, expected: "every token where the I/O puts it",
                                seen: Wording.list(wrong, limit: 3)))
    }

    /// `overflow-alert`: a connection prints one alert, the first time a
    /// request finds its persistent limit reached, and no other.
    static func overflowAlert(_ prediction: Prediction, _ observed: EventObservation, into findings: inout [Finding]) {
        let seen = observed.environment.alerts
        let wrong = switch prediction.alerts {
        case .none: seen != 0
        case .one: seen != 1
        case .noneOrOne: seen > 1
        case .unjudged: false
        }
        guard wrong else { return }
        findings.append(Finding(.overflowAlert, in: .alerts,
                                expected: prediction.alerts == .one
                                    ? "one alert: the persistent limit is reached for the first time on this connection"
                                    : "no alert",
                                seen: "\(seen) alert(s)"))
    }
}
