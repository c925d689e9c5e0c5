import Backend
import Blkif
import Harness
import Oracle
import TestSupport
import Testing
import Trace

/// Every request shape over a tiny pool of grefs, small limits and every
/// single fault position: the fixed backend must be clean on all of them,
/// and each quirk reachable from such shapes must be caught somewhere.
@Suite struct ExhaustiveSmallTests {
    /// Every sequence of 1…3 segments over grefs 1…3.
    static let segmentLists: [[BlkifSegment]] = {
        var lists: [[BlkifSegment]] = [[]]
        var all: [[BlkifSegment]] = []
        for _ in 1...3 {
            lists = lists.flatMap { list in (1...3).map { list + [BlkifSegment(gref: GrantRef($0), firstSect: 0, lastSect: 7)] } }
            all += lists
        }
        return all
    }()

    enum Fault: CaseIterable {
        case none, mapFirst, mapSecond, mapThird, allocFirst, allocSecond, allocThird, allocFourth, hypercall
        var event: FaultEvent? {
            switch self {
            case .none: nil
            case .mapFirst: .mapNth(nth: 1, status: .generalError)
            case .mapSecond: .mapNth(nth: 2, status: .badGntref)
            case .mapThird: .mapNth(nth: 3, status: .noSpace)
            case .allocFirst: .allocNth(nth: 1)
            case .allocSecond: .allocNth(nth: 2)
            case .allocThird: .allocNth(nth: 3)
            case .allocFourth: .allocNth(nth: 4)
            case .hypercall: .hypercallNth(nth: 1)
            }
        }
    }

    /// A warm-up request fills part of the tree, then the request under test
    /// (with its fault) runs, then a reuse of everything, then teardown.
    static func trace(limit: Int, persistent: Bool, segments: [BlkifSegment], write: Bool, fault: Fault) -> [TraceEventKind] {
        var events: [TraceEventKind] = [
            .connect(ConnectEvent(domid: 2, persistent: persistent, maxPersistent: limit)),
            .grant(GrantEvent(grefs: 1...3, domid: 2)),
            .request(RequestEvent(id: 1, operation: 0, sector: 0, segments: [BlkifSegment(gref: 2, firstSect: 0, lastSect: 3)])),
        ]
        if let fault = fault.event { events.append(.fail(fault)) }
        events.append(.request(RequestEvent(id: 2, operation: write ? 1 : 0, sector: 16, segments: segments)))
        events.append(.request(RequestEvent(id: 3, operation: 0, sector: 16, segments: segments)))
        events.append(.disconnect(vbd: 0))
        return events
    }

    static func run(_ events: [TraceEventKind], _ variant: BackendVariant) -> ReplayReport {
        replay(events, backend: variant, name: "exhaustive")
    }

    static var cases: [(Int, Bool, [BlkifSegment], Bool, Fault)] {
        var all: [(Int, Bool, [BlkifSegment], Bool, Fault)] = []
        for limit in 0...3 {
            for persistent in [true, false] where persistent || limit == 3 {
                for segments in segmentLists {
                    for write in [false, true] {
                        for fault in Fault.allCases { all.append((limit, persistent, segments, write, fault)) }
                    }
                }
            }
        }
        return all
    }

    @Test func theFixedBackendIsCleanOnEverySmallShape() {
        var runs = 0
        for (limit, persistent, segments, write, fault) in Self.cases {
            let report = Self.run(Self.trace(limit: limit, persistent: persistent, segments: segments, write: write, fault: fault), .fixed)
            runs += 1
            #expect(report.verdict == .pass,
                    "limit \(limit) persistent \(persistent) \(write ? "write" : "read") \(segments) \(fault): \(report.violations.prefix(3).map(\.violation.description))")
            if report.verdict != .pass { return }
        }
        #expect(runs == 4 * 39 * 2 * 9 + 39 * 2 * 9)
    }

    /// Quirks whose defect a single connection's small requests can reach.
    @Test(arguments: [Quirk.handleZeroUnmapped, .teardownNextAfterFree, .teardownKeepsPages, .failedMapKeepsPage,
                      .duplicateDangles, .enomemNoRollback, .bugOnHypercallError])
    func eachReachableQuirkIsCaughtSomewhere(quirk: Quirk) {
        let variant = BackendVariant(quirks: [quirk])
        let caught = Self.cases.contains { limit, persistent, segments, write, fault in
            Self.run(Self.trace(limit: limit, persistent: persistent, segments: segments, write: write, fault: fault), variant).verdict == .fail
        }
        #expect(caught, "\(quirk.rawValue) never caught")
    }
}
