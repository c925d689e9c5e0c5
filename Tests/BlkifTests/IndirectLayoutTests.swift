import Testing
@testable import Blkif

/// Offsets below are computed by hand from io/blkif.h's packed
/// `blkif_x86_{32,64}_request_indirect`, not from the code under test.
@Suite struct IndirectLayoutTests {
    @Test func pagesForSegments() {
        #expect(Blkif.segmentsPerIndirectPage == 512)
        #expect(Blkif.indirectPages(forSegments: 0) == 0)
        #expect(Blkif.indirectPages(forSegments: 1) == 1)
        #expect(Blkif.indirectPages(forSegments: 512) == 1)
        #expect(Blkif.indirectPages(forSegments: 513) == 2)
        #expect(Blkif.indirectPages(forSegments: 8 * 512) == 8)
    }

    @Test func x86_64IndirectBytes() throws {
        let request = BlkifIndirectRequest(indirectOperation: 1, nrSegments: 0x0102, handle: 0x0A0B,
                                           id: 0x1112_1314_1516_1718, sectorNumber: 0x2122_2324_2526_2728,
                                           indirectGrefs: [0x3132_3334, 5])
        for proto in [BlkifProtocol.native, .x86_64] {
            let bytes = proto.encode(request)
            #expect(bytes.count == 112)
            #expect(bytes[0] == 6 && bytes[1] == 1)
            #expect(bytes[2] == 0x02 && bytes[3] == 0x01)
            #expect(bytes[4..<8].allSatisfy { $0 == 0 })
            #expect(Array(bytes[8..<16]) == [0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11])
            #expect(Array(bytes[16..<24]) == [0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21])
            #expect(bytes[24] == 0x0B && bytes[25] == 0x0A)
            #expect(bytes[26] == 0 && bytes[27] == 0)
            #expect(Array(bytes[28..<36]) == [0x34, 0x33, 0x32, 0x31, 5, 0, 0, 0])
            #expect(bytes[36...].allSatisfy { $0 == 0 })
            #expect(try proto.decodeIndirectRequest(bytes) == request)
        }
    }

    @Test func x86_32IndirectBytes() throws {
        let request = BlkifIndirectRequest(indirectOperation: 0, nrSegments: 300, handle: 2,
                                           id: 0x0102_0304_0506_0708, sectorNumber: 0x99,
                                           indirectGrefs: [9, 10, 11, 12, 13, 14, 15, 16])
        let bytes = BlkifProtocol.x86_32.encode(request)
        #expect(bytes.count == 108)
        #expect(bytes[0] == 6 && bytes[1] == 0)
        #expect(bytes[2] == 0x2C && bytes[3] == 0x01)
        #expect(Array(bytes[4..<12]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[12..<20]) == [0x99, 0, 0, 0, 0, 0, 0, 0])
        #expect(bytes[20] == 2 && bytes[21] == 0)
        #expect(Array(bytes[24..<28]) == [9, 0, 0, 0])
        #expect(Array(bytes[52..<56]) == [16, 0, 0, 0])
        #expect(bytes[56...].allSatisfy { $0 == 0 })
        #expect(try BlkifProtocol.x86_32.decodeIndirectRequest(bytes) == request)
        #expect(BlkifProtocol.x86_32.indirectRequest.size == 64)   // common.h asserts both are equal
        #expect(BlkifProtocol.x86_64.indirectRequest.size == 64)
    }

    @Test func otherOperationsAreNotIndirect() throws {
        let plain = BlkifProtocol.native.encode(BlkifRequest(operation: 0, id: 1, sectorNumber: 0))
        #expect(try BlkifProtocol.native.decodeIndirectRequest(plain) == nil)
        #expect(throws: BlkifDecodingError.self) { try BlkifProtocol.x86_32.decodeIndirectRequest(plain) }
    }

    @Test func segmentPagesRoundTripEveryCount() {
        // Exhaustive over counts that cross a page boundary, spot checks beyond.
        for count in [0, 1, 2, 11, 255, 256, 511, 512, 513, 1024, 1025, 4096] {
            let segments = (0..<count).map { (index: Int) -> BlkifSegment in
                let gref = GrantRef(truncatingIfNeeded: index &* 2_654_435_761)
                let first = UInt8(index % 8)
                return BlkifSegment(gref: gref, firstSect: first, lastSect: first + UInt8(index % 3))
            }
            let pages = IndirectSegmentPages.encode(segments)
            #expect(pages.count == Blkif.indirectPages(forSegments: count))
            for (index, segment) in segments.enumerated() {
                #expect(IndirectSegmentPages.segment(index, in: pages[index / 512]) == segment)
            }
        }
    }

    @Test func descriptorBytesInThePage() {
        let pages = IndirectSegmentPages.encode(
            (0..<513).map { BlkifSegment(gref: GrantRef($0), firstSect: 1, lastSect: 6) })
        #expect(Array(pages[0][8..<16]) == [1, 0, 0, 0, 1, 6, 0, 0])
        #expect(Array(pages[1][0..<8]) == [0, 2, 0, 0, 1, 6, 0, 0])   // descriptor 512
        #expect(pages[1][8...].allSatisfy { $0 == 0 })
    }
}
