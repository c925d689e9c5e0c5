/// What a run's grants did over the trace, in a fixed number of buckets of
/// consecutive records: when the buckets are full, neighbours merge in
/// pairs and each bucket covers twice as many records. Memory stays
/// bounded whatever the trace's length, and two runs over the same records
/// bucket them the same way.
public struct GrantSeries: Hashable, Sendable {
    public struct Bucket: Hashable, Sendable {
        /// Records covered, counting from 1: `firstRecord...lastRecord`.
        public var firstRecord: Int
        public var lastRecord: Int
        /// Persistent grants the backend held after the bucket's last record, and at most during it.
        public var grantsHeld: Int
        public var grantsHeldPeak: Int
        /// Segments placed, and those that needed no map operation (persistent hits).
        public var segments: Int
        public var hits: Int
        /// Unmap hypercalls since the start, after the bucket's last record.
        public var unmapHypercalls: Int

        public var records: Int { lastRecord - firstRecord + 1 }
        /// The share of segments that were hits, nil for a bucket without segments.
        public var hitRate: Double? { segments > 0 ? Double(hits) / Double(segments) : nil }
    }

    public let capacity: Int
    public private(set) var buckets: [Bucket] = []
    /// Records per bucket now.
    public private(set) var width = 1
    private var records = 0
    private var lastSegments = 0
    private var lastMapOps = 0

    /// `capacity` is even, so that merging pairs halves it.
    public init(capacity: Int = 512) {
        precondition(capacity >= 2 && capacity % 2 == 0)
        self.capacity = capacity
        buckets.reserveCapacity(capacity)
    }

    /// After one more record: the run's counters since its start.
    public mutating func add(grantsHeld: Int, segments: Int, mapOps: Int, unmapHypercalls: Int) {
        records += 1
        let newSegments = segments - lastSegments
        let hits = max(0, newSegments - (mapOps - lastMapOps))
        lastSegments = segments
        lastMapOps = mapOps
        if let last = buckets.last, last.records < width {
            let index = buckets.count - 1
            buckets[index].lastRecord = records
            buckets[index].grantsHeld = grantsHeld
            buckets[index].grantsHeldPeak = max(last.grantsHeldPeak, grantsHeld)
            buckets[index].segments += newSegments
            buckets[index].hits += hits
            buckets[index].unmapHypercalls = unmapHypercalls
            return
        }
        if buckets.count == capacity { mergePairs() }
        buckets.append(Bucket(firstRecord: records, lastRecord: records, grantsHeld: grantsHeld, grantsHeldPeak: grantsHeld,
                              segments: newSegments, hits: hits, unmapHypercalls: unmapHypercalls))
    }

    private mutating func mergePairs() {
        var merged: [Bucket] = []
        merged.reserveCapacity(capacity)
        var index = 0
        while index + 1 < buckets.count {
            let a = buckets[index]
            let b = buckets[index + 1]
            merged.append(Bucket(firstRecord: a.firstRecord, lastRecord: b.lastRecord, grantsHeld: b.grantsHeld,
                                 grantsHeldPeak: max(a.grantsHeldPeak, b.grantsHeldPeak), segments: a.segments + b.segments,
                                 hits: a.hits + b.hits, unmapHypercalls: b.unmapHypercalls))
            index += 2
        }
        buckets = merged
        width *= 2
    }
}
