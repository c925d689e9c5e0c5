import Blkif
@testable import FakeXen
@testable import Oracle
import Testing
import Trace

@Suite struct NegotiationCheckTests {
    let connect = Prediction(negotiation: ExpectedNegotiation(vbd: 0, persistent: true, backendOffers: true,
                                                              frontendFeature: "1", advertised: "1", domid: 3))
    /// A backend that advertised what `connect` expects.
    var advertising: StubWorld {
        var world = StubWorld()
        world.backendKeys[0] = ["feature-persistent": "1"]
        return world
    }

    @Test func theNegotiatedModePasses() {
        let published: [Publication] = [.negotiated(vbd: 0, persistent: true)]
        #expect(found { Checks.negotiation(connect, observe(for: connect), published: published, in: advertising, into: &$0) } == [])
    }

    @Test func theWrongModeSaysWhatDecidedIt() {
        let published: [Publication] = [.negotiated(vbd: 0, persistent: false)]
        #expect(found { Checks.negotiation(connect, observe(for: connect), published: published, in: advertising, into: &$0) } == [Finding(
            .negotiation, in: .connection,
            expected: "persistent grants on (backend offers: true, frontend feature-persistent: 1)", seen: "off")])
        #expect(found { Checks.negotiation(connect, observe(for: connect), published: [], in: advertising, into: &$0) }.map(\.seen)
                    == ["no negotiation"])
    }

    @Test func theAdvertisementIsHeldToThePrediction() {
        let published: [Publication] = [.negotiated(vbd: 0, persistent: true)]
        #expect(found { Checks.negotiation(connect, observe(for: connect), published: published, in: StubWorld(), into: &$0) } == [
            Finding(.negotiation, in: .connection, expected: "backend key feature-persistent \"1\"", seen: "absent")])
        var zero = StubWorld()
        zero.backendKeys[0] = ["feature-persistent": "0"]
        #expect(found { Checks.negotiation(connect, observe(for: connect), published: published, in: zero, into: &$0) }
                    .map(\.seen) == ["\"0\""])
    }

    @Test func anyOtherEventNegotiatesNothing() {
        let none = Prediction()
        let published: [Publication] = [.negotiated(vbd: 1, persistent: false)]
        #expect(found { Checks.negotiation(none, observe(for: none), published: published, in: StubWorld(), into: &$0) } == [
            Finding(.negotiation, in: .connection, expected: "no negotiation now",
                    seen: "vbd 1 negotiated persistent grants off")])
    }

    @Test func aConnectionTheBackendDoesNotHold() {
        var prediction = Prediction()
        prediction.tree = TreeExpectation(vbd: 2, connection: connectionModel())
        #expect(found { Checks.negotiation(prediction, observe(for: prediction), published: [], in: StubWorld(), into: &$0) } == [
            Finding(.negotiation, in: .tree, expected: "vbd 2 connected", seen: "the backend has no such connection"),
        ])
        var world = StubWorld()
        world.connections[2] = ObservedConnection(persistentMode: true, persistentCount: 0, treeVersion: 0)
        #expect(found { Checks.negotiation(prediction, observe(world: world, for: prediction), published: [], in: world, into: &$0) } == [])
    }
}

@Suite struct TeardownCheckTests {
    let prediction = Prediction(teardown: ExpectedTeardown(vbd: 0, domid: 3))

    @Test func nothingLeftPasses() {
        #expect(found { Checks.teardown(prediction, observe(for: prediction), in: StubWorld(), into: &$0) } == [])
    }

    @Test func whatADisconnectLeavesBehind() {
        var world = StubWorld()
        world.connections[0] = ObservedConnection(persistentMode: true, persistentCount: 1, treeVersion: 3)
        world.mappings = [mapping(handle: 10, gref: 1)]
        world.allocations[AllocationOwner(domid: 3, vbd: 0)] = ["ring"]
        let findings = found { Checks.teardown(prediction, observe(world: world, for: prediction), in: world, into: &$0) }
        #expect(findings.map(\.seen) == [
            "the backend still holds it", "still mapped: gref 1 (handle 10)", "still allocated: ring",
        ])
        #expect(findings.allSatisfy { $0.check == .teardown && $0.section == .connection })
    }

    @Test func anotherConnectionOfTheDomainKeepsItsMappings() {
        let other = connectionModel(tree: [1: 10])
        let prediction = Prediction(teardown: ExpectedTeardown(vbd: 0, domid: 3),
                                    mappedAfter: ExpectedMappings(connections: [1: other]))
        var world = StubWorld()
        world.mappings = [mapping(handle: 10, gref: 1)]
        #expect(found { Checks.teardown(prediction, observe(world: world, for: prediction), in: world, into: &$0) } == [])
    }
}

@Suite struct EnvironmentCheckTests {
    @Test func eachAlarmIsItsOwnCheckAndKeepsItsPlace() {
        let record = EnvironmentRecord([
            .alert(message: "limit"),
            .doubleFree(address: "0x10", what: "page"),
            .useAfterFree(address: "0x20", access: .read, what: "grant"),
        ])
        #expect(found { Checks.doubleFree(record, into: &$0) } == [Finding(.doubleFree, in: .environment(at: 1),
                                                      expected: "each object freed once",
                                                      seen: "second free of page at 0x10")])
        #expect(found { Checks.useAfterFree(record, into: &$0) }.map(\.section) == [.environment(at: 2)])
        #expect(found { Checks.useAfterFree(record, into: &$0) }.map(\.seen) == ["read of grant at 0x20"])
        #expect(found { Checks.panic(record, into: &$0) } == [])
        #expect(found { Checks.accessUnmapped(record, into: &$0) } == [])
        #expect(found { Checks.unmapInUse(record, into: &$0) } == [])
    }

    @Test func aQuietEnvironmentRaisesNothing() {
        let record = EnvironmentRecord([mapBatch([(1, false)], handles: [10]), .alert(message: "limit")])
        #expect(found {
            Checks.useAfterFree(record, into: &$0)
            Checks.doubleFree(record, into: &$0)
            Checks.panic(record, into: &$0)
            Checks.accessUnmapped(record, into: &$0)
            Checks.unmapInUse(record, into: &$0)
        } == [])
    }
}
