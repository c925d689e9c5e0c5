import Blkif

/// A few bytes of kernel stack: where `make_response` builds a
/// `struct blkif_response` before copying it out. Bytes the code never
/// stored into still hold what the stack held before (host bytes, here a
/// stale kernel pointer), and the frame remembers which ones they are, so
/// that copying them where the guest can read them is seen.
public struct StackFrame: Sendable {
    /// The largest frame a backend builds: the native response (16 bytes).
    public static let capacity = 16
    /// What a stack slot held before: a kernel address, none of whose bytes
    /// is zero, so a leaked byte can never pass for a cleared one.
    public static let residue: UInt64 = 0xFFFF_8881_3A5C_7E90

    public let size: Int
    private(set) var bytes = ResponseBytes()
    /// Bit i set: byte i is still stack residue.
    private(set) var hostMask: UInt16

    public init(size: Int) {
        precondition(size > 0 && size <= Self.capacity, "a stack frame here holds 1 to 16 bytes")
        self.size = size
        for index in 0..<Self.capacity { bytes[index] = UInt8(truncatingIfNeeded: Self.residue >> (8 * (index % 8))) }
        hostMask = UInt16(truncatingIfNeeded: (1 << size) - 1)
    }

    /// Stores a little-endian field; its bytes are no longer residue.
    public mutating func store<Value: FixedWidthInteger>(_ value: Value, at offset: Int) {
        let width = Value.bitWidth / 8
        precondition(offset >= 0 && offset + width <= size, "a store stays inside the frame")
        for index in 0..<width {
            bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
            hostMask &= ~(1 << UInt16(offset + index))
        }
    }
}

/// The first 16 bytes of a ring slot (the widest response), as two
/// little-endian words: compact enough to travel in an observation.
public struct ResponseBytes: Hashable, Sendable {
    public private(set) var low: UInt64 = 0
    public private(set) var high: UInt64 = 0

    public init() {}

    /// Stores the low `width` bytes of `bits` little-endian at `offset`:
    /// one masked write per word the field touches, not one per byte.
    mutating func store(_ bits: UInt64, width: Int, at offset: Int) {
        let end = offset + width
        if end <= 8 {
            low = Self.merge(low, bits, width: width, shift: offset)
        } else if offset >= 8 {
            high = Self.merge(high, bits, width: width, shift: offset - 8)
        } else {
            let lowWidth = 8 - offset
            low = Self.merge(low, bits, width: lowWidth, shift: offset)
            high = Self.merge(high, bits >> (8 * UInt64(lowWidth)), width: width - lowWidth, shift: 0)
        }
    }

    private static func merge(_ word: UInt64, _ bits: UInt64, width: Int, shift: Int) -> UInt64 {
        let mask: UInt64 = width >= 8 ? ~0 : (1 << (8 * UInt64(width))) - 1
        let at = 8 * UInt64(shift)
        return word & ~(mask << at) | (bits & mask) << at
    }

    public subscript(offset: Int) -> UInt8 {
        get { UInt8(truncatingIfNeeded: (offset < 8 ? low : high) >> (8 * UInt64(offset % 8))) }
        set {
            let shift = 8 * UInt64(offset % 8)
            let cleared = ~(UInt64(0xFF) << shift), placed = UInt64(newValue) << shift
            if offset < 8 { low = low & cleared | placed } else { high = high & cleared | placed }
        }
    }
}

/// What the backend wrote into one response slot before pushing it: which
/// of the slot's first 16 bytes it stored, their values, and which of them
/// were host bytes. The fake Xen records it; it does not judge it.
public struct ResponseSlotWrite: Hashable, Sendable {
    public let vbd: UInt16
    /// The ring's ABI, which lays the response out.
    public let ringProtocol: BlkifProtocol
    /// The slot it went to: `index % ring size`.
    public let slot: UInt16
    /// Bit i set: byte i of the slot was written.
    public let written: UInt16
    /// Bit i set: byte i came from host memory.
    public let host: UInt16
    /// The response's index on this ring (`rsp_prod` before the push).
    public let index: UInt32
    /// The slot's first 16 bytes after the writes.
    public let bytes: ResponseBytes

    public func byte(_ offset: Int) -> UInt8 { bytes[offset] }
    public func wasWritten(_ offset: Int) -> Bool { written & (1 << UInt16(offset)) != 0 }
}

/// The shared ring page of one vbd, the guest's memory the backend writes
/// its responses into. Only the response side is modelled byte by byte:
/// requests reach the backend already read. A write is staged until the
/// push, then recorded whole as one `responseSlot` observation, so a
/// response costs one log entry however many stores made it.
public final class SharedRing {
    public let vbd: UInt16
    public let ringProtocol: BlkifProtocol
    private let log: ObservationLog

    /// Everything that changes, in one value: each method below is one
    /// access to it.
    private struct State {
        /// The slots' first 16 bytes (the widest response); the rest of a
        /// slot is request bytes, which the backend never writes.
        var slots: [ResponseBytes]
        /// `rsp_prod_pvt`: responses written, pushed or not.
        var responseProducer: UInt32 = 0
        /// What the response being written has touched so far.
        var written: UInt16 = 0
        var host: UInt16 = 0
        let size: UInt32

        var currentSlot: Int { Int(responseProducer % size) }
    }

    // Unchecked exclusivity: `state` is private, and each method below reads
    // or changes it in plain statements that call nothing outside the value
    // (the log is written after the access ends). No two accesses can
    // overlap; the runtime check cost more than the three stores it guarded.
    @exclusivity(unchecked) private var state: State

    public init(vbd: UInt16, ringProtocol: BlkifProtocol, log: ObservationLog) {
        self.vbd = vbd
        self.ringProtocol = ringProtocol
        self.log = log
        state = State(slots: Array(repeating: ResponseBytes(), count: ringProtocol.ringSize),
                      size: UInt32(ringProtocol.ringSize))
    }

    /// `rsp_prod_pvt`: responses written so far, pushed or not.
    public var responseProducer: UInt32 { state.responseProducer }

    /// `resp->FIELD = value` on the slot of the response being written (the
    /// way responses are written since 2017): a store straight into guest memory.
    public func storeResponseField<Value: FixedWidthInteger>(_ value: Value, at offset: Int) {
        let width = Value.bitWidth / 8
        precondition(offset >= 0 && offset + width <= StackFrame.capacity,
                     "a response field lies in the slot's first 16 bytes")
        let covered = UInt16(truncatingIfNeeded: (1 << width) - 1) << UInt16(offset)
        let slot = state.currentSlot
        state.slots[slot].store(UInt64(truncatingIfNeeded: value), width: width, at: offset)
        state.written |= covered
        state.host &= ~covered
    }

    /// `memcpy(slot, &frame, frame.size)`: every byte of the frame lands in
    /// the slot, residue included.
    public func copyToResponseSlot(_ frame: StackFrame) {
        let slot = state.currentSlot
        for index in 0..<frame.size { state.slots[slot][index] = frame.bytes[index] }
        let covered = UInt16(truncatingIfNeeded: (1 << frame.size) - 1)
        state.written |= covered
        state.host = (state.host & ~covered) | frame.hostMask
    }

    /// `rsp_prod_pvt++` and the push: the guest may read the slot now.
    public func pushResponse() {
        let slot = state.currentSlot
        let write = ResponseSlotWrite(vbd: vbd, ringProtocol: ringProtocol, slot: UInt16(slot), written: state.written,
                                      host: state.host, index: state.responseProducer, bytes: state.slots[slot])
        state.written = 0
        state.host = 0
        state.responseProducer &+= 1
        log.record(.responseSlot(write))
    }

    /// The frontend reads the response at `index` as its ABI lays it out.
    public func response(at index: UInt32) -> BlkifResponse {
        let slot = state.slots[Int(index % state.size)]
        let layout = ringProtocol.response
        var id: UInt64 = 0
        for offset in 0..<8 { id |= UInt64(slot[layout.id + offset]) << (8 * UInt64(offset)) }
        let status = UInt16(slot[layout.status]) | UInt16(slot[layout.status + 1]) << 8
        return BlkifResponse(id: id, operation: slot[layout.operation], status: Int16(bitPattern: status))
    }
}
