import Blkif

/// One ring request as a frontend model decides it, before it has grants:
/// what it does, where, and the sectors of each page it moves. The session
/// gives each segment a granted page and the request an id.
public struct PlannedRequest: Hashable, Sendable {
    public enum Operation: Hashable, Sendable {
        case read
        case write
        /// `BLKIF_OP_FLUSH_DISKCACHE`, with no segments: a cache flush.
        case flush
        /// `BLKIF_OP_DISCARD` of this many sectors from `sector`; no segments.
        case discard(sectors: UInt64)
    }

    /// The sectors one page carries: `first...last`, within 0...7.
    public struct Segment: Hashable, Sendable {
        public var first: UInt8
        public var last: UInt8

        public init(first: UInt8, last: UInt8) {
            self.first = first
            self.last = last
        }

        public var sectorCount: Int { Int(last) - Int(first) + 1 }
    }

    public var operation: Operation
    public var sector: UInt64
    public var segments: [Segment]

    public init(operation: Operation, sector: UInt64, segments: [Segment] = []) {
        self.operation = operation
        self.sector = sector
        self.segments = segments
    }

    /// The ring's operation byte.
    var operationCode: UInt8 {
        switch operation {
        case .read: BlkifOperation.read.rawValue
        case .write: BlkifOperation.write.rawValue
        case .flush: BlkifOperation.flushDiskcache.rawValue
        case .discard: BlkifOperation.discard.rawValue
        }
    }

    /// Whether the backend writes into the pages (so a legacy frontend may grant them read-only otherwise).
    var backendWritesPages: Bool { operation == .read }
}
