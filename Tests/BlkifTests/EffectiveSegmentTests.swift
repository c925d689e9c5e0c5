import Testing
import Blkif

/// The array-free accessors must say exactly what `effectiveSegments` says:
/// the harness stamps, and counts segments, through them.
@Suite struct EffectiveSegmentTests {
    @Test func countAndElementsAgreeWithTheArray() {
        for carried in 0...Blkif.maxSegmentsPerRequest {
            let segments = (0..<carried).map { BlkifSegment(gref: GrantRef($0 + 1), firstSect: 1, lastSect: 6) }
            for nr in 0...UInt8(Blkif.maxSegmentsPerRequest + 2) {
                let request = BlkifRequest(operation: BlkifOperation.write.rawValue, nrSegments: nr, id: 1,
                                           sectorNumber: 0, segments: segments)
                let expected = request.effectiveSegments
                #expect(request.effectiveSegmentCount == expected.count, "carried \(carried), nr \(nr)")
                #expect((0..<request.effectiveSegmentCount).map(request.effectiveSegment(at:)) == expected,
                        "carried \(carried), nr \(nr)")
            }
        }
    }

    @Test func aFullSlotDecodesToItsSegmentsInEveryProtocol() throws {
        let segments = (0..<Blkif.maxSegmentsPerRequest).map {
            BlkifSegment(gref: GrantRef(100 + $0), firstSect: UInt8($0 % 8), lastSect: 7)
        }
        let request = BlkifRequest(operation: BlkifOperation.read.rawValue, id: 9, sectorNumber: 77, segments: segments)
        for proto in BlkifProtocol.allCases {
            #expect(try proto.decodeRequest(proto.encode(request)) == request)
        }
    }
}
