import Blkif
import FakeXen
@testable import Oracle
import Testing
import Trace

/// `response-slot` and `host-leak`, held against slots a real `SharedRing` wrote.
@Suite struct ResponseSlotCheckTests {
    /// The observation a ring logs for one response, written the way `write` says.
    private func slotWrite(_ ringProtocol: BlkifProtocol = .native, skipping: Int = 0,
                           by write: (SharedRing) -> Void) -> Observation {
        let log = ObservationLog()
        let ring = SharedRing(vbd: 0, ringProtocol: ringProtocol, log: log)
        for _ in 0..<skipping { ring.pushResponse() }
        _ = log.drain()
        write(ring)
        ring.pushResponse()
        return log.drain()[0]
    }

    private func fieldByField(id: UInt64, operation: UInt8, status: BlkifResponseStatus) -> (SharedRing) -> Void {
        { ring in
            ring.storeResponseField(id, at: 0)
            ring.storeResponseField(operation, at: 8)
            ring.storeResponseField(UInt16(bitPattern: status.rawValue), at: 10)
        }
    }

    private func copiedFrame(id: UInt64, operation: UInt8, status: BlkifResponseStatus) -> (SharedRing) -> Void {
        { ring in
            var frame = StackFrame(size: 16)
            frame.store(id, at: 0)
            frame.store(operation, at: 8)
            frame.store(status.rawValue, at: 10)
            ring.copyToResponseSlot(frame)
        }
    }

    @Test func theFieldsAloneInAnySlotPass() {
        for proto in BlkifProtocol.allCases {
            let record = EnvironmentRecord([slotWrite(proto, skipping: 33, by: fieldByField(id: 0xAB, operation: 1,
                                                                                             status: .error))])
            #expect(found { Checks.responseSlot(record, into: &$0) } == [])
            #expect(found { Checks.hostLeak(record, into: &$0) } == [])
        }
    }

    @Test func aCopiedStackFrameLeaksItsPadding() {
        let record = EnvironmentRecord([slotWrite(by: copiedFrame(id: 5, operation: 0, status: .okay))])
        #expect(found { Checks.responseSlot(record, into: &$0) } == [
            Finding(.responseSlot, in: .responses,
                    expected: "slot 0 of vbd 0 holding response 0: id, operation and status written whole, padding zero or untouched",
                    seen: "padding bytes 9, 12-15 = 7e 81 88 ff ff")])
        #expect(found { Checks.hostLeak(record, into: &$0) } == [
            Finding(.hostLeak, in: .environment(at: 0), expected: "no host byte visible to the guest",
                    seen: "bytes 9, 12-15 of response slot 0 on vbd 0 hold the backend's stack (7e 81 88 ff ff)")])
    }

    @Test func onAnX86_32RingTheCopyRunsPastTheResponse() {
        let record = EnvironmentRecord([slotWrite(.x86_32, skipping: 40, by: copiedFrame(id: 5, operation: 0, status: .okay))])
        let findings = found { Checks.responseSlot(record, into: &$0) }
        #expect(findings.map(\.seen) == ["padding bytes 9 = 7e, bytes 12-15 written past the 12-byte response (= 81 88 ff ff)"])
        #expect(findings.map(\.expected) == ["slot 8 of vbd 0 holding response 40: id, operation and status written "
                                             + "whole, padding zero or untouched"])
    }

    @Test func zeroPaddingWrittenOnPurposeIsFine() {
        let write = slotWrite { ring in
            fieldByField(id: 5, operation: 0, status: .okay)(ring)
            ring.storeResponseField(UInt8(0), at: 9)
            ring.storeResponseField(UInt32(0), at: 12)
        }
        #expect(found { Checks.responseSlot(EnvironmentRecord([write]), into: &$0) } == [])
    }

    @Test func aFieldLeftUnwrittenIsNamed() {
        let noStatus = slotWrite { ring in
            ring.storeResponseField(UInt64(5), at: 0)
            ring.storeResponseField(UInt8(1), at: 8)
        }
        #expect(found { Checks.responseSlot(EnvironmentRecord([noStatus]), into: &$0) }.map(\.seen) == ["field bytes 10-11 never written"])
        let halfAnId = slotWrite { ring in
            ring.storeResponseField(UInt32(5), at: 0)
            ring.storeResponseField(UInt8(1), at: 8)
            ring.storeResponseField(UInt16(0), at: 10)
        }
        #expect(found { Checks.responseSlot(EnvironmentRecord([halfAnId]), into: &$0) }.map(\.seen) == ["field bytes 4-7 never written"])
    }

    @Test func theResponseCheckComparesTheOperation() {
        let want = Prediction(responses: [ExpectedResponse(vbd: 0, id: 1, status: .okay, operation: .write)])
        let findings = found { Checks.response(want, published: [response(id: 1, .okay)], into: &$0) }
        #expect(findings == [Finding(.response, in: .responses, expected: "id 1 answered with its operation 1",
                                     seen: "operation 0")])
    }
}
