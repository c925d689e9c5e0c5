import Backend
import Blkif
import Recording

/// How many requests a vbd has in flight.
public enum QueueDepth: Hashable, Sendable {
    /// At most N; when the ring holds N, the oldest completes first. 1 means
    /// every request is answered before the next (nothing is held).
    case fixed(Int)
    /// As the trace had them: a request completes when the trace says it
    /// did (MSR's ResponseTime, blkparse's `C` events), or, if the ring's
    /// slots are all taken, the one due first completes early (counted).
    case trace
}

/// Everything `replay import` can be asked, but the files.
public struct ImportOptions: Sendable {
    public var format: ImportFormat
    public var blkparseAction: BlkparseAction = .D
    /// The frontend written to the output; the other is run in memory for the comparison.
    public var frontend: Workload.Frontend = .persistent
    public var protocolName: BlkifProtocol = .native
    public var domid: UInt16 = 1
    /// nil: from the trace where the format has completions, else 1.
    public var queueDepth: QueueDepth?
    /// Only this device's records (the others are skipped and counted); nil: every device, one vbd each.
    public var device: String?
    /// The disk's size in sectors; nil: just large enough for the trace (a first pass finds it).
    public var diskSectors: UInt64?
    public var variant: BackendVariant = .fixed
    public var oracle = true
    /// The largest read or write taken (a longer one is an error): bounds the work one line can cause.
    public var maxIOBytes: UInt64 = 64 << 20
    /// Trims longer than this are cut to it (counted): a discard maps no
    /// grant, and the models' cost grows with its length.
    public var maxTrimBytes: UInt64 = 1 << 30
    /// The most devices imported at once (one vbd each).
    public var maxDevices = 64
    /// Records of more than 11 pages as indirect requests of up to 256
    /// segments (backends from G2013 on), instead of split into direct ones.
    public var indirect = false
    /// Stop reading after this many records (a prefix of a long trace); nil: read them all.
    public var maxRecords: Int?

    public init(format: ImportFormat) { self.format = format }

    /// `MAX_INDIRECT_SEGMENTS`: the most segments blkback takes in one
    /// indirect request (G2013 advertises it as `feature-max-indirect-segments`).
    public static let maxIndirectSegments = 256

    /// The queue depth this import uses.
    public var effectiveQueueDepth: QueueDepth { queueDepth ?? (format.hasCompletions ? .trace : .fixed(1)) }

    /// What is wrong with these options, if anything.
    public var problems: [String] {
        var found: [String] = []
        switch effectiveQueueDepth {
        case let .fixed(depth) where !(1...protocolName.ringSize).contains(depth):
            found.append("the queue depth must be within 1...\(protocolName.ringSize) (the ring's slots), or 'trace'")
        case .trace where !format.hasCompletions:
            found.append("\(format.rawValue) traces say nothing of completions: give --queue-depth N")
        default: break
        }
        if !(1...32767).contains(domid) { found.append("the domain must be within 1...32767") }
        if let sectors = diskSectors, sectors == 0 { found.append("the disk must have at least one sector") }
        if let records = maxRecords, records < 1 { found.append("--max-records must be at least 1") }
        if indirect && variant.generation == .g2012 {
            found.append("indirect requests need a G2013 or G2018 backend (linux-3.11, g2013, g2018, linux-5.10…): G2012's blkback has none")
        }
        return found
    }
}
