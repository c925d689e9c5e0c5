import Blkif
@testable import FakeXen
@testable import Oracle
import Testing
import Trace

/// The oracle as the harness drives it: events, observations, publications, a world.
@Suite final class ConformanceOracleTests {
    let oracle = ConformanceOracle()
    var world = StubWorld()
    let position = TracePosition.line(4, column: 1)

    init() {
        world.grant([1, 2])
        world.connections[0] = ObservedConnection(persistentMode: true, persistentCount: 0, treeVersion: 0)
        world.trees[0] = ObservedTree(nodes: [], root: nil, brokenLinks: [])
        world.backendKeys[0] = ["feature-persistent": "1"]
    }

    func check(_ event: TraceEventKind, _ environment: [Observation] = [], _ publications: [Publication] = [])
        -> [Violation] {
        oracle.check(event, at: position, environment: environment, publications: publications, world: world)
    }

    @Test func aConnectTheBackendGetsRightIsClean() {
        #expect(check(.connect(ConnectEvent(domid: 3, persistent: true)), [],
                      [.negotiated(vbd: 0, persistent: true)]) == [])
    }

    @Test func aConformingRequestIsCleanAndCounted() {
        _ = check(.connect(ConnectEvent(domid: 3, persistent: true)), [], [.negotiated(vbd: 0, persistent: true)])
        world.mappings = [mapping(handle: 10, gref: 1)]
        world.connections[0] = ObservedConnection(persistentMode: true, persistentCount: 1, treeVersion: 1)
        world.trees[0] = ObservedTree(nodes: [ObservedNode(gref: 1, isRed: false, handle: 10, left: nil, right: nil)],
                                      root: 0, brokenLinks: [])
        world.guestTokens[GuestPage(1)] = [0: 0x51]
        // The write moves the page's tokens (0x51, then the stub's zeros) to sectors 0...7.
        world.diskTokens[0] = Dictionary(uniqueKeysWithValues: (0...7).map { ($0, $0 == 0 ? 0x51 : 0) })
        let violations = check(requestEvent(id: 1, .write, grefs: [1]), [mapBatch([(1, false)], handles: [10])],
                               [.unmapping(vbd: 0, id: 1, nrSegments: 1, bitmap: 0), response(id: 1, .okay, operation: .write)])
        #expect(violations == [])
        #expect(oracle.statistics.newPersistent == 1)
    }

    /// A disconnect whose teardown findings fall on both sides of the map and
    /// unmap findings: the report keeps them in the order reports always had.
    @Test func findingsAreReportedInReportOrder() {
        _ = check(.connect(ConnectEvent(domid: 3, persistent: true)), [], [.negotiated(vbd: 0, persistent: true)])
        _ = check(requestEvent(id: 1, .read, grefs: [1]), [mapBatch([(1, false)], handles: [10])],
                  [.unmapping(vbd: 0, id: 1, nrSegments: 1, bitmap: 0), response(id: 1, .okay)])
        world.mappings = [mapping(handle: 10, gref: 1)]
        let violations = check(.disconnect(vbd: 0), [
            .useAfterFree(address: "0x40", access: .write, what: "page"),
            mapBatch([(2, false)], handles: [11]),
            unmapBatch([(99, nil)]),
        ])
        #expect(violations.map(\.check) == [.useAfterFree, .teardown, .teardown, .mapOps, .unmapOps, .teardown])
        #expect(violations.map(\.seen) == [
            "write of page at 0x40",
            "the backend still holds it",
            "still mapped: gref 1 (handle 10)",
            "1 map batch(es)",
            "unmap of handle 99 answered bad_handle",
            "not unmapped",
        ])
        #expect(violations.allSatisfy { $0.position == position })
    }

    @Test func afterAPanicNothingElseIsJudgedAndTheEventIsNotTakenIn() {
        let violations = check(.connect(ConnectEvent(domid: 3, persistent: true)), [
            .panic(message: "BUG at blkback.c:1"), .doubleFree(address: "0x8", what: "ring"),
        ])
        #expect(violations.map(\.check) == [.panic, .doubleFree])
        // The connect never happened for the reference: a request on it is not judged.
        #expect(check(requestEvent(id: 1, .read, grefs: [1]), [mapBatch([(1, false)], handles: [10])]) == [])
    }
}
