import Blkif
@testable import FakeXen
@testable import Oracle
import Testing
import Trace

/// The reference model's predictions for small events, on a persistent connection of domain 3, vbd 0.
@Suite final class PredictionTests {
    let reference = ReferenceModel()
    var world = StubWorld()

    init() {
        world.grant([1, 2, 3, 4])
        _ = reference.predict(.connect(ConnectEvent(domid: 3, persistent: true, maxPersistent: 2)),
                              environment: EnvironmentRecord([]), world: world)
    }

    func predict(_ event: TraceEventKind, _ environment: [Observation] = []) -> Prediction {
        reference.predict(event, environment: EnvironmentRecord(environment), world: world)
    }

    @Test func connectedAgainChangesNothingButTheKey() {
        _ = predict(requestEvent(id: 1, .write, grefs: [1, 2], hold: true),
                    [mapBatch([(1, false), (2, false)], handles: [10, 11])])
        let again = predict(.connect(ConnectEvent(domid: 3, persistent: false, maxPersistent: 9, sectors: 8)))
        #expect(again.negotiation == nil)
        #expect(again.tree?.vbd == 0)
        #expect(again.tree?.limit == 2)
        #expect(again.tree?.grants.dictionary == [1: 10, 2: 11])
        #expect(again.mappedAfter.handles(of: 3) == [10, 11])
        #expect(predict(.complete(id: 1, vbd: 0)).responses == [ExpectedResponse(vbd: 0, id: 1, status: .okay,
                                                                                 operation: .write)])
        // the key the repeated connect wrote decides the next real one
        _ = predict(.disconnect(vbd: 0))
        #expect(predict(.connect(ConnectEvent(domid: 3))).negotiation?.persistent == false)
    }

    @Test func aConnectNegotiatesWhatBothSidesOffer() {
        let prediction = predict(.connect(ConnectEvent(domid: 3, persistent: false, vbd: 1)))
        #expect(prediction.negotiation == ExpectedNegotiation(vbd: 1, persistent: false, backendOffers: true,
                                                              frontendFeature: "0", advertised: "1", domid: 3))
        #expect(prediction.tree?.vbd == 1)
        #expect(prediction.tree?.limit == BlkifProtocol.native.maxPersistentGrants)
        #expect(prediction.mapOps == .noneOutsideRequest)
    }

    @Test func theFrontendKeyIsReadAsPercentUReadsIt() {
        _ = predict(.frontendKey(name: "feature-persistent", value: " 1\n"))
        #expect(predict(.connect(ConnectEvent(domid: 3, vbd: 1))).negotiation?.persistent == true)
    }

    @Test func aFirstWriteMapsEachNewGrantWritableOnce() {
        let prediction = predict(requestEvent(id: 1, .write, grefs: [1, 2, 1]),
                                 [mapBatch([(1, false), (2, false)], handles: [10, 11])])
        #expect(prediction.mapOps == .oneBatch(domid: 3, ops: [ExpectedMapOp(gref: 1, readOnly: false),
                                                               ExpectedMapOp(gref: 2, readOnly: false)]))
        #expect(prediction.tree?.grants.dictionary == [1: 10, 2: 11])
        #expect(prediction.unmapBitmaps == [ExpectedBitmap(vbd: 0, id: 1, bitmap: 0)])
        #expect(prediction.responses == [ExpectedResponse(vbd: 0, id: 1, status: .okay, operation: .write)])
        #expect(prediction.unmaps.isEmpty)
        #expect(prediction.diskWrites.count == 24)
        #expect(reference.statistics.newPersistent == 2)
        #expect(reference.statistics.persistentHits == 1)
    }

    @Test func hitsMapNothing() {
        _ = predict(requestEvent(id: 1, .write, grefs: [1]), [mapBatch([(1, false)], handles: [10])])
        let prediction = predict(requestEvent(id: 2, .read, grefs: [1]))
        #expect(prediction.mapOps == .noBatch(because: "every segment is a persistent hit"))
        #expect(prediction.guestWrites.count == 8)
    }

    @Test func overTheLimitAWriteTakesReadOnlyOneOffsAndAlertsOnce() {
        let first = predict(requestEvent(id: 1, .write, grefs: [1, 2, 3]),
                            [mapBatch([(1, false), (2, false), (3, true)], handles: [10, 11, 12])])
        #expect(first.mapOps == .oneBatch(domid: 3, ops: [ExpectedMapOp(gref: 1, readOnly: false),
                                                          ExpectedMapOp(gref: 2, readOnly: false),
                                                          ExpectedMapOp(gref: 3, readOnly: true)]))
        #expect(first.alerts == .one)
        #expect(first.unmaps == [12])
        #expect(first.unmapBitmaps == [ExpectedBitmap(vbd: 0, id: 1, bitmap: 0b100)])
        let second = predict(requestEvent(id: 2, .write, grefs: [4]), [mapBatch([(4, true)], handles: [13])])
        #expect(second.alerts == ExpectedAlerts.none)
        #expect(reference.statistics.overflowed == 2)
    }

    @Test func anAllocationFailureLeavesTheAlertOpenAndFailsTheRequest() {
        _ = predict(requestEvent(id: 1, .write, grefs: [1, 2]), [mapBatch([(1, false), (2, false)], handles: [10, 11])])
        let prediction = predict(requestEvent(id: 2, .write, grefs: [3]), [.allocationFailed(what: "pages")])
        #expect(prediction.alerts == .noneOrOne(vbd: 0))
        #expect(prediction.mapOps == .noBatch(because: "an allocation failed before the batch"))
        #expect(prediction.responses == [ExpectedResponse(vbd: 0, id: 2, status: .error, operation: .write)])
        #expect(prediction.unmapBitmaps == [ExpectedBitmap(vbd: 0, id: 2, bitmap: 0)])
    }

    @Test func aRefusedPersistentMapIsDemotedAndFailsTheRequest() {
        let refused = Observation.mapBatch(MapBatch(
            ops: [MapOp(hostPage: PageFrame(0), flags: .hostMap, gref: 1, domid: 3)],
            results: [MapResult(status: .badGntref, handle: 0)]))
        let prediction = predict(requestEvent(id: 1, .read, grefs: [1, 1]), [refused])
        #expect(prediction.tree?.grants.dictionary == [:])
        #expect(prediction.unmapBitmaps == [ExpectedBitmap(vbd: 0, id: 1, bitmap: 0b11)])
        #expect(prediction.responses == [ExpectedResponse(vbd: 0, id: 1, status: .error)])
    }

    @Test func anInvalidRequestIsAnsweredWithoutMapping() {
        let prediction = predict(.request(RequestEvent(id: 9, operation: 0xEE, sector: 0)))
        #expect(prediction.mapOps == .noBatch(because: "the request is invalid (answer error)"))
        // answered with the operation byte it came with, though no operation has that number
        #expect(prediction.responses == [ExpectedResponse(vbd: 0, id: 9, status: .error, operation: 0xEE)])
    }

    @Test func aRequestOnAnUnknownVbdIsNotJudged() {
        let prediction = predict(.request(RequestEvent(id: 1, operation: 0, sector: 0, segments: [segment(1)], vbd: 7)))
        #expect(prediction.mapOps == .unjudged)
        #expect(prediction.tree == nil)
        #expect(prediction.responses.isEmpty)
    }

    @Test func heldIOCompletesOnItsCompleteAndAtTeardown() {
        let held = predict(requestEvent(id: 1, .write, grefs: [1, 2, 3], hold: true),
                           [mapBatch([(1, false), (2, false), (3, true)], handles: [10, 11, 12])])
        #expect(held.responses.isEmpty)
        #expect(held.unmaps.isEmpty)
        #expect(held.mappedAfter.handles(of: 3) == [10, 11, 12])

        let completed = predict(.complete(id: 1, vbd: 0))
        #expect(completed.completesHeldIO)
        #expect(completed.responses == [ExpectedResponse(vbd: 0, id: 1, status: .okay, operation: .write)])
        #expect(completed.unmaps == [12])
        #expect(completed.mappedAfter.handles(of: 3) == [10, 11])

        let teardown = predict(.disconnect(vbd: 0))
        #expect(teardown.teardown == ExpectedTeardown(vbd: 0, domid: 3))
        #expect(teardown.unmaps == [10, 11])
        #expect(teardown.mappedAfter.domains.isEmpty)
    }

    /// A held write takes its tokens when its I/O completes: a page the guest
    /// stamps again meanwhile gives the held write its new tokens.
    @Test func aHeldWriteTakesTheTokensItsPageHoldsWhenItCompletes() {
        world.guestTokens[GuestPage(1)] = [0: 0xA]
        _ = predict(requestEvent(id: 1, .write, grefs: [1], hold: true), [mapBatch([(1, false)], handles: [10])])
        world.guestTokens[GuestPage(1)] = [0: 0xB]
        let rewrite = predict(requestEvent(id: 2, .write, grefs: [1]))
        #expect(rewrite.diskWrites.token(at: 0, in: 0) == 0xB)
        world.guestTokens[GuestPage(1)] = [0: 0xC]
        // Nothing stamped page 1 in this event: the held write keeps 0xB.
        let other = predict(requestEvent(id: 3, .write, grefs: [2]), [mapBatch([(2, false)], handles: [11])])
        #expect(other.diskWrites.token(at: 0, in: 0) == 0)
        let completed = predict(.complete(id: 1, vbd: 0))
        #expect(completed.diskWrites.token(at: 0, in: 0) == 0xB)
    }

    /// The same, for a page a read fills while the write is held.
    @Test func aReadFillingTheHeldWritesPageGivesItTheReadsTokens() {
        _ = predict(requestEvent(id: 1, .write, grefs: [1], hold: true), [mapBatch([(1, false)], handles: [10])])
        // The read fills page 1 from disk sector 0 (its initial token); the world shows the page as it left it.
        world.guestTokens[GuestPage(1)] = [0: Ramdisk.initialToken(sector: 0)]
        _ = predict(.request(RequestEvent(id: 2, operation: BlkifOperation.read.rawValue, sector: 0,
                                          segments: [segment(1)])))
        let completed = predict(.complete(id: 1, vbd: 0))
        #expect(completed.diskWrites.token(at: 0, in: 0) == Ramdisk.initialToken(sector: 0))
    }
}

/// The reference's disk, stored in chunks: every sector reads as what was last written there.
@Suite struct DiskModelTests {
    @Test func unwrittenSectorsReadAsNew() {
        var disk = DiskModel()
        #expect(disk.token(0) == Ramdisk.initialToken(sector: 0))
        #expect(disk.token(UInt64.max) == Ramdisk.initialToken(sector: UInt64.max))
    }

    @Test func writesLandOnTheirSectorOnlyAcrossChunkEdges() {
        var disk = DiskModel()
        for sector: UInt64 in [0, 511, 512, 1023, 1 << 40, UInt64.max] { disk.write(sector &+ 7, at: sector) }
        for sector: UInt64 in [0, 511, 512, 1023, 1 << 40, UInt64.max] { #expect(disk.token(sector) == sector &+ 7) }
        for sector: UInt64 in [1, 510, 513, 1024, (1 << 40) + 1, UInt64.max - 1] {
            #expect(disk.token(sector) == Ramdisk.initialToken(sector: sector))
        }
    }

    /// Runs written and read across block and chunk edges (more blocks than
    /// one chunk holds), against a plain dictionary of sectors.
    @Test func runsAgreeWithASectorDictionaryAcrossChunks() {
        var disk = DiskModel()
        var reference: [UInt64: UInt64] = [:]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 11 }
        for round in 0..<400 {
            let sector = next() % (200 * 512)
            let count = Int(next() % 1100) + 1
            let tokens = (0..<count).map { UInt64(round) << 32 | UInt64($0) }
            tokens.withUnsafeBufferPointer { disk.write($0, at: sector) }
            for (offset, token) in tokens.enumerated() { reference[sector + UInt64(offset)] = token }
        }
        var run = [UInt64](repeating: 0, count: 200 * 512)
        run.withUnsafeMutableBufferPointer { disk.read(into: $0, from: 0) }
        for sector in 0..<UInt64(200 * 512) {
            #expect(run[Int(sector)] == (reference[sector] ?? Ramdisk.initialToken(sector: sector)))
            #expect(disk.token(sector) == run[Int(sector)])
        }
    }

    /// Runs of counting tokens, single sectors and tokens that do not count
    /// up (which outgrow a block's record of runs) mixed in few blocks, read
    /// back over random ranges after every write, against a dictionary.
    @Test func runsAndSpilledBlocksAgreeWithASectorDictionary() {
        var disk = DiskModel()
        var reference: [UInt64: UInt64] = [:]
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 11 }
        let span: UInt64 = 6 * 512
        let base: UInt64 = 1 << 48 - 1024
        for round in 0..<3000 {
            let sector = base + next() % span
            let count = Int(next() % 90) + 1
            let counting = next() % 4 != 0
            let first = next()
            let tokens = (0..<count).map { counting ? first &+ UInt64($0) : next() % 5 }
            tokens.withUnsafeBufferPointer { disk.write($0, at: sector) }
            for (offset, token) in tokens.enumerated() { reference[sector + UInt64(offset)] = token }
            let from = base + next() % span
            let length = Int(next() % 700) + 1
            var seen = [UInt64](repeating: 0, count: length)
            seen.withUnsafeMutableBufferPointer { disk.read(into: $0, from: from) }
            for offset in 0..<length {
                let sector = from + UInt64(offset)
                #expect(seen[offset] == (reference[sector] ?? Ramdisk.initialToken(sector: sector)),
                        "round \(round), sector \(sector)")
            }
            if round % 500 == 0, let erased = reference.keys.first {
                disk.erase(erased)
                reference[erased] = nil
            }
        }
    }

    @Test func anErasedSectorReadsAsNewAgain() {
        var disk = DiskModel()
        disk.write(5, at: 600)
        disk.erase(600)
        disk.erase(9_000)
        #expect(disk.token(600) == Ramdisk.initialToken(sector: 600))
        #expect(disk.token(9_000) == Ramdisk.initialToken(sector: 9_000))
    }
}

/// What an event writes: each sector once, with the token written there last.
@Suite struct WrittenTokensTests {
    func latest(_ written: WrittenTokens<UInt16>) -> [String] {
        var seen: [String] = []
        written.forEachLatest { area, sector, token in seen.append("\(area):\(sector)=\(token)") }
        return seen
    }

    @Test func consecutiveSectorsReadBackAsWritten() {
        var written = WrittenTokens<UInt16>()
        for sector: UInt64 in 10...13 { written.write(sector * 2, at: sector, in: 0) }
        written.write(7, at: 10, in: 1)
        #expect(latest(written) == ["0:10=20", "0:11=22", "0:12=24", "0:13=26", "1:10=7"])
        #expect(written.token(at: 12, in: 0) == 24)
        #expect(written.token(at: 14, in: 0) == nil)
        #expect(written.token(at: 11, in: 1) == nil)
        #expect(written.count == 5)
    }

    @Test func aSectorWrittenAgainHoldsTheLaterToken() {
        var written = WrittenTokens<UInt16>()
        for sector: UInt64 in 0...3 { written.write(1, at: sector, in: 0) }
        for sector: UInt64 in 2...5 { written.write(2, at: sector, in: 0) }
        written.write(3, at: 0, in: 0)
        #expect(latest(written) == ["0:1=1", "0:2=2", "0:3=2", "0:4=2", "0:5=2", "0:0=3"])
        #expect(written.token(at: 0, in: 0) == 3)
        #expect(written.token(at: 3, in: 0) == 2)
        #expect(written.count == 6)
    }

    @Test func theLastSectorThereIsDoesNotRunOnIntoTheFirst() {
        var written = WrittenTokens<UInt16>()
        written.write(1, at: UInt64.max, in: 0)
        written.write(2, at: 0, in: 0)
        #expect(latest(written) == ["0:\(UInt64.max)=1", "0:0=2"])
    }
}
