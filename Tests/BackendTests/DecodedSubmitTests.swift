import Testing
import Blkif
import FakeXen
import Backend

/// `submit(vbd:request:hold:)` stands for the slot's bytes already decoded:
/// two backends fed the same requests, one as bytes and one decoded, must do
/// and publish exactly the same.
@Suite struct DecodedSubmitTests {
    private static func requests() -> [(BlkifRequest, hold: Bool)] {
        let write = BlkifOperation.write.rawValue, read = BlkifOperation.read.rawValue
        let full = (1...11).map { seg(GrantRef($0)) }
        return [
            (BlkifRequest(operation: write, id: 1, sectorNumber: 0, segments: full), false),
            (BlkifRequest(operation: read, id: 2, sectorNumber: 0, segments: full), true),
            // nr_segments beyond the segments carried: the rest read as gref 0.
            (BlkifRequest(operation: write, nrSegments: 3, id: 3, sectorNumber: 8, segments: [seg(4)]), false),
            // nr_segments below them: only the first are used.
            (BlkifRequest(operation: read, nrSegments: 1, id: 4, sectorNumber: 8, segments: [seg(5), seg(6)]), false),
            (BlkifRequest(operation: write, nrSegments: 12, id: 5, sectorNumber: 8, segments: [seg(5)]), false),
            (BlkifRequest(operation: 0xEE, id: 6, sectorNumber: 0, segments: [seg(1)]), false),
            (BlkifRequest(operation: write, id: 7, sectorNumber: 0, segments: [seg(1, 6, 2)]), false),
        ]
    }

    @Test(arguments: BlkifProtocol.allCases)
    func aDecodedRequestDoesWhatItsBytesDo(proto: BlkifProtocol) {
        let asBytes = Driver(), decoded = Driver()
        for d in [asBytes, decoded] {
            d.grant(1...12)
            _ = d.connect(proto: proto)
        }
        for (request, hold) in Self.requests() {
            let viaBytes = asBytes.request(request, hold: hold)
            let viaRequest = decoded.submitDecoded(request, hold: hold)
            #expect(viaBytes.publications == viaRequest.publications, "request id=\(request.id)")
            #expect(viaBytes.observations == viaRequest.observations, "request id=\(request.id)")
        }
        #expect(asBytes.complete(id: 2).publications == decoded.complete(id: 2).publications)
        #expect(asBytes.diskTokens(0...40) == decoded.diskTokens(0...40))
    }

    @Test func theSummaryIsTheSnapshotsMode() {
        let d = Driver()
        #expect(d.backend.connectionSummary(vbd: d.vbd) == nil)
        d.grant(1...11)
        d.afterEveryStep = { d, _ in
            let summary = d.backend.connectionSummary(vbd: d.vbd)
            let snapshot = d.snapshot
            #expect(summary?.persistentMode == snapshot?.persistentMode)
            #expect(summary?.persistentCount == snapshot?.persistentCount)
            #expect(summary?.treeVersion == snapshot?.treeVersion)
        }
        _ = d.connect()
        d.write(id: 1, (1...11).map { seg(GrantRef($0)) })
        d.read(id: 2, (1...4).map { seg(GrantRef($0)) }, hold: true)
        d.complete(id: 2)
        d.disconnect()
        #expect(d.backend.connectionSummary(vbd: d.vbd) == nil)
    }
}

extension Driver {
    /// Hands the backend the request itself rather than its bytes, as the
    /// harness does with a `request` event's fields.
    @discardableResult
    func submitDecoded(_ request: BlkifRequest, hold: Bool = false) -> Step {
        run("decoded request id=\(request.id)") { backend.submit(vbd: vbd, request: request, hold: hold) }
    }
}
