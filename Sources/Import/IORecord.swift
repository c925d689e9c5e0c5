/// One I/O of a block trace, in the trace's own terms turned into bytes and
/// nanoseconds: what the parsers give the converter.
public struct IORecord: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        case read, write
        /// A trim or discard: the range's contents are no longer needed.
        case discard
        /// A cache flush (sync, datasync, a blkparse `F` with no data): no range.
        case flush
    }

    /// The disk, volume, file or device the trace names: one vbd each.
    public var device: String
    public var kind: Kind
    public var offset: UInt64
    public var length: UInt64
    /// A write (blkparse `FWS`) that asks for a cache flush before it.
    public var preflush: Bool
    /// When it was issued, in nanoseconds of the trace's clock; nil when the format has no clock.
    public var time: UInt64?
    /// When it completed (MSR's timestamp + ResponseTime), in the same clock.
    public var completion: UInt64?

    public init(device: String, kind: Kind, offset: UInt64 = 0, length: UInt64 = 0, preflush: Bool = false,
                time: UInt64? = nil, completion: UInt64? = nil) {
        self.device = device
        self.kind = kind
        self.offset = offset
        self.length = length
        self.preflush = preflush
        self.time = time
        self.completion = completion
    }
}

/// Why a line was read and left out; each is counted in the summary.
public enum SkipReason: String, CaseIterable, Hashable, Sendable, Comparable {
    case blank = "blank line"
    case comment = "comment"
    case header = "header line"
    case summary = "blkparse summary"
    case message = "blkparse message (m)"
    case otherAction = "other blkparse action"
    case noData = "request without data"
    case fileAction = "fio file action (add/open/close)"
    case wait = "fio wait"
    case zeroLength = "zero-length I/O"
    case smallTrim = "trim shorter than a sector"
    case otherDevice = "other device (--device)"
    case beyondDisk = "beyond the disk (--disk-sectors)"
    case unmatchedCompletion = "completion of nothing in flight"
    case unusedCompletion = "completion (queue depth not from the trace)"

    public static func < (a: SkipReason, b: SkipReason) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// What one line of a trace is.
public enum TraceLine: Hashable, Sendable {
    case record(IORecord)
    /// blkparse `C`: the device finished the I/O of these sectors.
    case completion(device: String, sector: UInt64, sectors: UInt64, time: UInt64)
    case skip(SkipReason)
}
