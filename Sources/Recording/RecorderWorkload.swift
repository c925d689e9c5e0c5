import Seeded
import Blkif

/// What a recorded frontend does: how blkfront drives the ring, as a
/// deterministic, seeded model. The same workload always gives the same
/// events, and two workloads that differ only in `frontend` do the same I/O
/// (same requests, operations, sectors, segment shapes and completion order).
public struct Workload: Hashable, Sendable {
    public enum Frontend: String, CaseIterable, Sendable {
        /// blkfront with persistent grants (2012): writes `feature-persistent`
        /// = 1 and keeps a pool of granted pages, reusing the last freed
        /// first (blkif.h's advice), granting a new page only when the pool
        /// has none free — so the pool grows to at most a ring's worth.
        case persistent
        /// blkfront before it: writes no `feature-persistent`, grants a fresh
        /// page per segment (read-only for writes) and revokes it once the
        /// response is in.
        case legacy
    }

    public enum SectorPattern: String, CaseIterable, Sendable {
        /// Each request starts where the previous one ended (wrapping at the end of the disk).
        case sequential
        /// Each request starts at a random sector.
        case random
    }

    public var seed: UInt64
    /// Requests to issue in all (over every connection).
    public var requests: Int
    public var frontend: Frontend
    /// The share of reads; the rest are writes.
    public var readFraction: Double
    /// Segments per request, drawn uniformly from this range (within 1...11).
    public var segments: ClosedRange<Int>
    public var sectorPattern: SectorPattern
    /// Requests in flight at most (1...32). Above 1 every request is held
    /// until the workload completes it, in random order (out of order).
    public var queueDepth: Int
    /// Disconnect and connect again after this many requests (nil: never).
    public var reconnectEvery: Int?
    public var protocolName: BlkifProtocol
    public var domid: UInt16
    /// The disk's size in sectors (`connect sectors=`); the model's disk
    /// state is bounded by it, whatever the number of requests.
    public var diskSectors: UInt64

    public init(seed: UInt64 = 1, requests: Int = 1000, frontend: Frontend = .persistent, readFraction: Double = 0.5,
                segments: ClosedRange<Int> = 1...11, sectorPattern: SectorPattern = .sequential, queueDepth: Int = 1,
                reconnectEvery: Int? = nil, protocolName: BlkifProtocol = .native, domid: UInt16 = 1,
                diskSectors: UInt64 = 262_144) {
        self.seed = seed
        self.requests = requests
        self.frontend = frontend
        self.readFraction = readFraction
        self.segments = segments
        self.sectorPattern = sectorPattern
        self.queueDepth = queueDepth
        self.reconnectEvery = reconnectEvery
        self.protocolName = protocolName
        self.domid = domid
        self.diskSectors = diskSectors
    }

    /// What is wrong with this workload, if anything, one message per problem.
    public var problems: [String] {
        var found: [String] = []
        if requests < 0 { found.append("requests must be at least 0") }
        if !(0...1).contains(readFraction) { found.append("the read fraction must be within 0...1") }
        if segments.lowerBound < 1 || segments.upperBound > Blkif.maxSegmentsPerRequest {
            found.append("segments per request must be within 1...\(Blkif.maxSegmentsPerRequest)")
        }
        if !(1...protocolName.ringSize).contains(queueDepth) {
            found.append("the queue depth must be within 1...\(protocolName.ringSize) (the ring's slots)")
        }
        if let every = reconnectEvery, every < 1 { found.append("reconnect-every must be at least 1") }
        if !(1...32767).contains(domid) { found.append("the domain must be within 1...32767") }
        let largest = UInt64(Blkif.maxSegmentsPerRequest * Blkif.sectorsPerPage)
        if diskSectors < largest { found.append("the disk must have at least \(largest) sectors (one full request)") }
        return found
    }
}

/// SplitMix64 with its own bounded draws, so a seed gives the same workload
/// on every platform and toolchain (no dependence on the standard library's
/// `random(in:)` algorithms).
struct WorkloadRandom {
    private var generator: SplitMix64

    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    /// Uniform in 0..<bound (bound ≥ 1), by the multiply-high method.
    mutating func below(_ bound: UInt64) -> UInt64 {
        next().multipliedFullWidth(by: bound).high
    }

    mutating func int(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(below(UInt64(range.upperBound - range.lowerBound + 1)))
    }

    /// Uniform in [0, 1).
    mutating func fraction() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func chance(_ probability: Double) -> Bool { fraction() < probability }
}

/// Grant references as Linux hands them out: a free list, last freed first,
/// above the 8 reserved entries (`GNTTAB_NR_RESERVED_ENTRIES`).
struct GrefAllocator {
    private var nextUnused: GrantRef = 8
    private var free: [GrantRef] = []

    mutating func take() -> GrantRef {
        if let gref = free.popLast() { return gref }
        defer { nextUnused += 1 }
        return nextUnused
    }

    mutating func give(_ gref: GrantRef) { free.append(gref) }
}
