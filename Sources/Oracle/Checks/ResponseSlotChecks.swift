import Blkif
import FakeXen
import Trace

/// The bytes a response puts in the guest's ring.
extension Checks {
    /// `response-slot`: each response goes into the next slot of its ring,
    /// and the backend writes there exactly the response: `id`, `operation`
    /// and `status` as predicted, at the ring ABI's offsets; padding it
    /// writes is zero; nothing past the response (an x86_32 response is 12
    /// bytes at the start of a 108-byte slot whose rest is the guest's).
    /// Bytes it leaves alone keep what the guest had there.
    static func responseSlot(_ prediction: Prediction, _ environment: EnvironmentRecord,
                             into findings: inout [Finding]) {
        guard environment.wroteResponses else { return }
        var matched = Array(repeating: false, count: prediction.responses.count)
        for observation in environment.observations {
            guard case let .responseSlot(write) = observation else { continue }
            // The write answers the first predicted response of its vbd not yet
            // matched; one more than predicted is the `response` check's to report.
            guard let index = prediction.responses.indices.first(where: {
                !matched[$0] && prediction.responses[$0].vbd == write.vbd
            }) else { continue }
            matched[index] = true
            let want = prediction.responses[index]
            let problems = slotProblems(write, want)
            guard !problems.isEmpty else { continue }
            findings.append(Finding(.responseSlot, in: .responses,
                                    expected: "response \(want.ringIndex) of vbd \(want.vbd) in slot \(want.slot): id \(want.id), "
                                        + "operation \(want.operation), status \(want.status), padding zero or untouched",
                                    seen: Wording.list(problems)))
        }
    }

    private static func slotProblems(_ write: ResponseSlotWrite, _ want: ExpectedResponse) -> [String] {
        var problems: [String] = []
        if write.index != want.ringIndex {
            problems.append("written as response \(write.index), in slot \(write.slot)")
        }
        let layout = want.ringProtocol.response
        var expected = [UInt8](repeating: 0, count: StackFrame.capacity)
        var isField = [Bool](repeating: false, count: StackFrame.capacity)
        func field(_ value: UInt64, at offset: Int, width: Int) {
            for byte in 0..<width {
                expected[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * byte))
                isField[offset + byte] = true
            }
        }
        field(want.id, at: layout.id, width: 8)
        field(UInt64(want.operation), at: layout.operation, width: 1)
        field(UInt64(UInt16(bitPattern: want.status.rawValue)), at: layout.status, width: 2)
        var unwritten: [Int] = [], wrong: [Int] = [], dirtyPadding: [Int] = [], pastResponse: [Int] = []
        for offset in 0..<StackFrame.capacity {
            let written = write.wasWritten(offset)
            if offset >= layout.size {
                if written { pastResponse.append(offset) }
            } else if isField[offset] {
                if !written { unwritten.append(offset) } else if write.byte(offset) != expected[offset] { wrong.append(offset) }
            } else if written, write.byte(offset) != 0 {
                dirtyPadding.append(offset)
            }
        }
        if !wrong.isEmpty {
            let seen = SharedResponseFields(write, layout)
            problems.append("id \(seen.id), operation \(seen.operation), status \(Wording.status(seen.status))")
        }
        if !unwritten.isEmpty { problems.append("field bytes \(Wording.byteRuns(unwritten)) never written") }
        if !dirtyPadding.isEmpty { problems.append("padding bytes \(Wording.byteRuns(dirtyPadding)) = \(Wording.bytes(of: write, at: dirtyPadding))") }
        if !pastResponse.isEmpty {
            problems.append("bytes \(Wording.byteRuns(pastResponse)) written past the \(layout.size)-byte response "
                            + "(= \(Wording.bytes(of: write, at: pastResponse)))")
        }
        return problems
    }
}

/// The fields as the written slot holds them, for a finding's wording.
private struct SharedResponseFields {
    let id: UInt64
    let operation: UInt8
    let status: Int16

    init(_ write: ResponseSlotWrite, _ layout: BlkifProtocol.ResponseLayout) {
        var id: UInt64 = 0
        for byte in 0..<8 { id |= UInt64(write.byte(layout.id + byte)) << (8 * byte) }
        self.id = id
        operation = write.byte(layout.operation)
        status = Int16(bitPattern: UInt16(write.byte(layout.status)) | UInt16(write.byte(layout.status + 1)) << 8)
    }
}
