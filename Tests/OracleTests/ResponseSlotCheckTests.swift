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

    private func prediction(_ responses: ExpectedResponse...) -> Prediction { Prediction(responses: responses) }

    @Test func theFieldsAloneInTheRightSlotPass() {
        for proto in BlkifProtocol.allCases {
            let want = ExpectedResponse(vbd: 0, id: 0xAB, status: .error, operation: .write, ringIndex: 33,
                                        ringProtocol: proto)
            let write = slotWrite(proto, skipping: 33, by: fieldByField(id: 0xAB, operation: 1, status: .error))
            let record = EnvironmentRecord([write])
            #expect(found { Checks.responseSlot(prediction(want), record, into: &$0) } == [])
            #expect(found { Checks.hostLeak(record, into: &$0) } == [])
        }
    }

    @Test func aCopiedStackFrameLeaksItsPadding() {
        let want = ExpectedResponse(vbd: 0, id: 5, status: .okay)
        let record = EnvironmentRecord([slotWrite(by: copiedFrame(id: 5, operation: 0, status: .okay))])
        let slot = found { Checks.responseSlot(prediction(want), record, into: &$0) }
        #expect(slot.count == 1)
        #expect(slot.first?.seen == "padding bytes 9, 12-15 = 7e 81 88 ff ff")
        let leak = found { Checks.hostLeak(record, into: &$0) }
        #expect(leak == [Finding(.hostLeak, in: .environment(at: 0), expected: "no host byte visible to the guest",
                                 seen: "bytes 9, 12-15 of response slot 0 on vbd 0 hold the backend's stack (7e 81 88 ff ff)")])
    }

    @Test func onAnX86_32RingTheCopyRunsPastTheResponse() {
        let want = ExpectedResponse(vbd: 0, id: 5, status: .okay, ringProtocol: .x86_32)
        let record = EnvironmentRecord([slotWrite(.x86_32, by: copiedFrame(id: 5, operation: 0, status: .okay))])
        let seen = found { Checks.responseSlot(prediction(want), record, into: &$0) }.map(\.seen)
        #expect(seen == ["padding bytes 9 = 7e, bytes 12-15 written past the 12-byte response (= 81 88 ff ff)"])
    }

    @Test func zeroPaddingWrittenOnPurposeIsFine() {
        let want = ExpectedResponse(vbd: 0, id: 5, status: .okay)
        let write = slotWrite { ring in
            fieldByField(id: 5, operation: 0, status: .okay)(ring)
            ring.storeResponseField(UInt8(0), at: 9)
            ring.storeResponseField(UInt32(0), at: 12)
        }
        #expect(found { Checks.responseSlot(prediction(want), EnvironmentRecord([write]), into: &$0) } == [])
    }

    @Test func wrongFieldsAMissingStatusAndTheWrongSlotAreNamed() {
        let want = ExpectedResponse(vbd: 0, id: 5, status: .error, operation: .write, ringIndex: 1)
        let wrongOperation = slotWrite(skipping: 1, by: fieldByField(id: 5, operation: 0, status: .error))
        #expect(found { Checks.responseSlot(prediction(want), EnvironmentRecord([wrongOperation]), into: &$0) }.map(\.seen)
                == ["id 5, operation 0, status error"])
        let noStatus = slotWrite(skipping: 1) { ring in
            ring.storeResponseField(UInt64(5), at: 0)
            ring.storeResponseField(UInt8(1), at: 8)
        }
        #expect(found { Checks.responseSlot(prediction(want), EnvironmentRecord([noStatus]), into: &$0) }.map(\.seen)
                == ["field bytes 10-11 never written"])
        let firstSlot = slotWrite(by: fieldByField(id: 5, operation: 1, status: .error))
        let findings = found { Checks.responseSlot(prediction(want), EnvironmentRecord([firstSlot]), into: &$0) }
        #expect(findings.map(\.seen) == ["written as response 0, in slot 0"])
        #expect(findings.first?.expected == "response 1 of vbd 0 in slot 1: id 5, operation 1, status error, padding zero or untouched")
    }

    @Test func aResponseNobodyPredictedIsLeftToTheResponseCheck() {
        let write = slotWrite(by: fieldByField(id: 5, operation: 0, status: .okay))
        #expect(found { Checks.responseSlot(prediction(), EnvironmentRecord([write]), into: &$0) } == [])
    }

    @Test func theResponseCheckComparesTheOperation() {
        let want = Prediction(responses: [ExpectedResponse(vbd: 0, id: 1, status: .okay, operation: .write)])
        let findings = found { Checks.response(want, observe(publications: [response(id: 1, .okay)], for: want), into: &$0) }
        #expect(findings == [Finding(.response, in: .responses, expected: "id 1 answered with its operation 1",
                                     seen: "operation 0")])
    }
}
