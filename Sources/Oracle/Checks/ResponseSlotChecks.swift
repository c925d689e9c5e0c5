import Blkif
import FakeXen
import Trace

/// The bytes a response puts in the guest's ring.
extension Checks {
    /// `response-slot`: the backend writes into a response's slot exactly
    /// the response: every byte of `id`, `operation` and `status` at the ring
    /// ABI's offsets, any padding it writes zero, nothing past the response
    /// (an x86_32 response is 12 bytes at the start of a 108-byte slot whose
    /// rest is the guest's). Bytes it leaves alone keep what the guest had
    /// there. The fields' values are `response`'s to judge (it reads them
    /// back as the frontend does), and the slot is the ring's next by
    /// construction: the fake ring offers no other.
    static func responseSlot(_ environment: EnvironmentRecord, into findings: inout [Finding]) {
        guard environment.wroteResponses else { return }
        for observation in environment.observations {
            guard case let .responseSlot(write) = observation else { continue }
            let layout = write.ringProtocol.response
            // The usual slot, told apart with three masks before anything is listed.
            if isExactlyTheResponse(write, layout: layout) { continue }
            let problems = slotProblems(write, layout: layout)
            guard !problems.isEmpty else { continue }
            findings.append(Finding(.responseSlot, in: .responses,
                                    expected: "slot \(write.slot) of vbd \(write.vbd) holding response \(write.index): "
                                        + "id, operation and status written whole, padding zero or untouched",
                                    seen: Wording.list(problems)))
        }
    }

    /// Bit i set: byte i of the slot belongs to one of the response's fields.
    private static func fieldMask(_ layout: BlkifProtocol.ResponseLayout) -> UInt16 {
        0xFF << UInt16(layout.id) | 1 << UInt16(layout.operation) | 0b11 << UInt16(layout.status)
    }

    /// Every field byte written, nothing past the response, padding written only as zero.
    private static func isExactlyTheResponse(_ write: ResponseSlotWrite, layout: BlkifProtocol.ResponseLayout) -> Bool {
        let fields = fieldMask(layout)
        let response: UInt16 = layout.size >= 16 ? 0xFFFF : (1 << UInt16(layout.size)) - 1
        guard write.written & fields == fields, write.written & ~response == 0 else { return false }
        var padding = write.written & ~fields
        while padding != 0 {
            let offset = padding.trailingZeroBitCount
            if write.byte(offset) != 0 { return false }
            padding &= padding - 1
        }
        return true
    }

    private static func slotProblems(_ write: ResponseSlotWrite, layout: BlkifProtocol.ResponseLayout) -> [String] {
        let fields = fieldMask(layout)
        var unwritten: [Int] = [], dirtyPadding: [Int] = [], pastResponse: [Int] = []
        for offset in 0..<StackFrame.capacity {
            let written = write.wasWritten(offset)
            if offset >= layout.size {
                if written { pastResponse.append(offset) }
            } else if fields & (1 << UInt16(offset)) != 0 {
                if !written { unwritten.append(offset) }
            } else if written, write.byte(offset) != 0 {
                dirtyPadding.append(offset)
            }
        }
        var problems: [String] = []
        if !unwritten.isEmpty { problems.append("field bytes \(Wording.byteRuns(unwritten)) never written") }
        if !dirtyPadding.isEmpty {
            problems.append("padding bytes \(Wording.byteRuns(dirtyPadding)) = \(Wording.bytes(of: write, at: dirtyPadding))")
        }
        if !pastResponse.isEmpty {
            problems.append("bytes \(Wording.byteRuns(pastResponse)) written past the \(layout.size)-byte response "
                            + "(= \(Wording.bytes(of: write, at: pastResponse)))")
        }
        return problems
    }
}
