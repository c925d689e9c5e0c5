import Blkif
import Testing
@testable import FakeXen

@Suite struct SharedRingTests {
    private func pushed(_ log: ObservationLog) -> [ResponseSlotWrite] {
        log.drain().compactMap { if case let .responseSlot(write) = $0 { write } else { nil } }
    }

    @Test func fieldStoresWriteOnlyTheFields() throws {
        for proto in BlkifProtocol.allCases {
            let log = ObservationLog()
            let ring = SharedRing(vbd: 3, ringProtocol: proto, log: log)
            ring.storeResponseField(UInt64(0x1122_3344_5566_7788), at: 0)
            ring.storeResponseField(UInt8(1), at: 8)
            ring.storeResponseField(UInt16(bitPattern: -1), at: 10)
            ring.pushResponse()
            let write = try #require(pushed(log).first)
            #expect(write.vbd == 3 && write.index == 0 && write.slot == 0)
            #expect(write.written == 0b0000_1101_1111_1111)   // bytes 0-8, 10, 11
            #expect(write.host == 0)
            #expect(write.byte(0) == 0x88 && write.byte(7) == 0x11 && write.byte(8) == 1)
            #expect(write.byte(10) == 0xFF && write.byte(11) == 0xFF)
            #expect(ring.response(at: 0) == BlkifResponse(id: 0x1122_3344_5566_7788, operation: 1, status: -1))
        }
    }

    @Test func aCopiedFrameCarriesItsResidue() throws {
        let log = ObservationLog()
        let ring = SharedRing(vbd: 0, ringProtocol: .x86_32, log: log)
        var frame = StackFrame(size: 16)
        frame.store(UInt64(5), at: 0)
        frame.store(UInt8(0), at: 8)
        frame.store(Int16(0), at: 10)
        ring.copyToResponseSlot(frame)
        ring.pushResponse()
        let write = try #require(pushed(log).first)
        #expect(write.written == 0xFFFF)
        // byte 9 and bytes 12-15 were never stored: stack residue, none of it zero
        #expect(write.host == 0b1111_0010_0000_0000)
        for index in [9, 12, 13, 14, 15] { #expect(write.byte(index) != 0) }
        #expect(ring.response(at: 0) == BlkifResponse(id: 5, operation: 0, status: 0))
    }

    @Test func responsesGoRoundTheRing() throws {
        let log = ObservationLog()
        let ring = SharedRing(vbd: 0, ringProtocol: .native, log: log)
        for id in 0..<UInt64(40) {
            ring.storeResponseField(id, at: 0)
            ring.pushResponse()
        }
        let writes = pushed(log)
        #expect(writes.map(\.index) == (0..<40).map(UInt32.init))
        #expect(writes.map(\.slot) == (0..<40).map { UInt16($0 % 32) })
        #expect(ring.response(at: 39).id == 39)
        #expect(ring.response(at: 7).id == 39)   // slot 7 now holds response 39
        #expect(ring.responseProducer == 40)
    }

    @Test func responseBytesKeepEveryByteApart() {
        var bytes = ResponseBytes()
        for offset in 0..<16 { bytes[offset] = UInt8(0xA0 + offset) }
        for offset in 0..<16 { #expect(bytes[offset] == UInt8(0xA0 + offset)) }
        bytes[7] = 0
        bytes[8] = 0xFF
        #expect(bytes.low == 0x00A6_A5A4_A3A2_A1A0 && bytes[8] == 0xFF && bytes[9] == 0xA9)
    }

    @Test func aStoreOverResidueClearsItsMark() {
        var frame = StackFrame(size: 4)
        frame.store(UInt16(0x0102), at: 1)
        #expect(frame.hostMask == 0b1001)
        frame.store(UInt8(7), at: 0)
        frame.store(UInt8(8), at: 3)
        #expect(frame.hostMask == 0)
    }
}

@Suite struct ResponseBytesStoreTests {
    /// Every width at every offset, against byte-by-byte stores.
    @Test func wordStoresMatchByteStores() {
        for width in [1, 2, 4, 8] {
            for offset in 0...(16 - width) {
                var stored = ResponseBytes()
                var expected = ResponseBytes()
                for index in 0..<16 {
                    stored[index] = UInt8(0xC0 | index)
                    expected[index] = UInt8(0xC0 | index)
                }
                let value: UInt64 = 0x8877_6655_4433_2211
                stored.store(value, width: width, at: offset)
                for index in 0..<width { expected[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
                #expect(stored == expected, "width \(width) at \(offset)")
            }
        }
    }
}
