import Testing
@testable import Blkif

/// Offsets below are computed by hand from io/blkif.h, not from the code under test.
@Suite struct LayoutTests {
    @Test func ringSizeIs32ForEveryProtocol() {
        // (4096 - 64) / 112 = 36 -> 32; (4096 - 64) / 108 = 37 -> 32.
        for proto in BlkifProtocol.allCases {
            #expect(proto.ringSize == 32)
            #expect(proto.maxPersistentGrants == 352)
        }
        #expect(Blkif.ringSize(entrySize: 64) == 32)   // 63 fit -> 32
        #expect(Blkif.ringSize(entrySize: 63) == 64)   // 64 fit -> 64
        #expect(Blkif.ringSize(entrySize: 5000) == 0)
    }

    @Test func x86_64RequestBytes() throws {
        let request = BlkifRequest(operation: 1, handle: 0x0203, id: 0x1112_1314_1516_1718,
                                   sectorNumber: 0x2122_2324_2526_2728,
                                   segments: [BlkifSegment(gref: 0x3132_3334, firstSect: 2, lastSect: 5),
                                              BlkifSegment(gref: 7, firstSect: 0, lastSect: 7)])
        for proto in [BlkifProtocol.native, .x86_64] {
            let bytes = proto.encode(request)
            #expect(bytes.count == 112)
            #expect(bytes[0] == 1)
            #expect(bytes[1] == 2)
            #expect(bytes[2] == 0x03 && bytes[3] == 0x02)
            #expect(bytes[4..<8].allSatisfy { $0 == 0 })
            #expect(Array(bytes[8..<16]) == [0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11])
            #expect(Array(bytes[16..<24]) == [0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21])
            #expect(Array(bytes[24..<32]) == [0x34, 0x33, 0x32, 0x31, 2, 5, 0, 0])
            #expect(Array(bytes[32..<40]) == [7, 0, 0, 0, 0, 7, 0, 0])
            #expect(bytes[40...].allSatisfy { $0 == 0 })
            #expect(try proto.decodeRequest(bytes) == request)
        }
    }

    @Test func x86_32RequestBytes() throws {
        let request = BlkifRequest(operation: 0, handle: 9, id: 0x0102_0304_0506_0708,
                                   sectorNumber: 0x99,
                                   segments: [BlkifSegment(gref: 0xAABB, firstSect: 1, lastSect: 3)])
        let bytes = BlkifProtocol.x86_32.encode(request)
        #expect(bytes.count == 108)
        #expect(bytes[1] == 1)
        #expect(Array(bytes[4..<12]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[12..<20]) == [0x99, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[20..<28]) == [0xBB, 0xAA, 0, 0, 1, 3, 0, 0])
        #expect(try BlkifProtocol.x86_32.decodeRequest(bytes) == request)
        // The last segment slot ends exactly at the end of the request.
        #expect(20 + 11 * 8 == 108)
    }

    @Test func discardCarriesNrSectorsInTheFirstSegmentSlot() throws {
        let request = BlkifRequest(operation: 5, nrSegments: 0, id: 3, sectorNumber: 64, discardSectors: 0x0102)
        let wide = BlkifProtocol.x86_64.encode(request)
        #expect(wide[24] == 0x02 && wide[25] == 0x01)
        let narrow = BlkifProtocol.x86_32.encode(request)
        #expect(narrow[20] == 0x02 && narrow[21] == 0x01)
        #expect(try BlkifProtocol.x86_32.decodeRequest(narrow) == request)
    }

    @Test func responseBytes() throws {
        let response = BlkifResponse(id: 0x0102_0304_0506_0708, operation: 1, status: -2)
        let wide = BlkifProtocol.x86_64.encode(response)
        #expect(wide == [8, 7, 6, 5, 4, 3, 2, 1, 1, 0, 0xFE, 0xFF, 0, 0, 0, 0])
        let narrow = BlkifProtocol.x86_32.encode(response)
        #expect(narrow == [8, 7, 6, 5, 4, 3, 2, 1, 1, 0, 0xFE, 0xFF])
        #expect(try BlkifProtocol.x86_32.decodeResponse(narrow) == response)
        #expect(try BlkifProtocol.native.decodeResponse(wide) == response)
    }

    @Test func lyingSegmentCountsKeepEverySlotThatCarriesData() throws {
        // nr_segments says 1 but three slots carry data: all three survive decoding.
        var request = BlkifRequest(operation: 0, nrSegments: 1, id: 1, sectorNumber: 0,
                                   segments: [BlkifSegment(gref: 1, firstSect: 0, lastSect: 0),
                                              BlkifSegment(gref: 0, firstSect: 0, lastSect: 0),
                                              BlkifSegment(gref: 3, firstSect: 0, lastSect: 0)])
        var decoded = try BlkifProtocol.native.decodeRequest(BlkifProtocol.native.encode(request))
        #expect(decoded == request)
        // nr_segments claims 5 with only two slots used: five are kept (zeros after).
        request = BlkifRequest(operation: 0, nrSegments: 5, id: 1, sectorNumber: 0,
                               segments: [BlkifSegment(gref: 1, firstSect: 0, lastSect: 0)])
        decoded = try BlkifProtocol.native.decodeRequest(BlkifProtocol.native.encode(request))
        #expect(decoded.segments.count == 5)
        #expect(decoded.effectiveSegments == request.effectiveSegments)
    }

    @Test func wrongSizesAreErrorsNotCrashes() {
        #expect(throws: BlkifDecodingError.wrongSize(expected: 112, got: 3, what: "x86_64 request")) {
            try BlkifProtocol.x86_64.decodeRequest([1, 2, 3])
        }
        #expect(throws: BlkifDecodingError.self) { try BlkifProtocol.x86_32.decodeResponse([UInt8](repeating: 0, count: 16)) }
    }

    @Test func grantStatusNamesRoundTrip() {
        for status in GrantStatus.allCases {
            #expect(GrantStatus(traceName: status.traceName) == status)
        }
        #expect(GrantStatus.noSpace.rawValue == -13)
        #expect(BlkifOperation(traceName: "barrier") == .writeBarrier)
    }
}
