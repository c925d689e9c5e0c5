import Recording

/// What one pass over the trace did with it, under one frontend.
public struct ImportTally: Sendable {
    public let frontend: Workload.Frontend
    public internal(set) var lines = 0
    /// Lines that are I/O records (before any was skipped).
    public internal(set) var records = 0
    public internal(set) var converted = 0
    public internal(set) var skipped: [SkipReason: Int] = [:]
    /// Reads and writes whose bytes did not start and end on sector boundaries: widened to whole sectors.
    public internal(set) var widened = 0
    /// Trims whose bytes did not start and end on sector boundaries: narrowed to the sectors they cover whole.
    public internal(set) var narrowed = 0
    /// Trims cut to the longest taken.
    public internal(set) var clippedTrims = 0
    public internal(set) var reads = 0
    public internal(set) var writes = 0
    public internal(set) var flushes = 0
    public internal(set) var discards = 0
    public internal(set) var segments = 0
    /// Of the reads and writes, those placed as indirect requests (`--indirect`).
    public internal(set) var indirect = 0
    /// Ring requests beyond one per record: a record of more than 11 pages is split.
    public internal(set) var splits = 0
    /// Requests completed before the trace says, because the ring's slots were all taken.
    public internal(set) var earlyCompletions = 0
    /// Requests still in flight when the trace ended (held ones only), completed then.
    public internal(set) var completedAtEnd = 0
    public internal(set) var tickedMilliseconds: UInt64 = 0
    public internal(set) var packets = 0
    public internal(set) var frontendTally = FrontendTally()
    public internal(set) var outcome = SessionFindings()

    init(frontend: Workload.Frontend) { self.frontend = frontend }

    public var requests: Int { reads + writes + flushes + discards }
    public var skippedCount: Int { skipped.values.reduce(0, +) }

    mutating func skip(_ reason: SkipReason) { skipped[reason, default: 0] += 1 }
}
