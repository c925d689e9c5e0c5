import Blkif
import FakeXen

/// The hypercalls one G2013 event must make, in order, as its steps work
/// them out, and the answers the hypervisor gave to the map hypercalls it
/// did make. A step's `n`-th predicted map batch takes the answers of the
/// event's `n`-th observed one (a reference may know what the hypervisor
/// answered, never what the backend decided); a predicted batch that never
/// ran is taken as failed, and `map-ops` reports the difference.
struct G2013Hypercalls {
    private let observedMaps: [MapBatch]
    private var nextObserved = 0
    private(set) var mapBatches: [[ExpectedMapOp]] = []
    private(set) var unmapBatches: [[GrantHandle]] = []
    /// Every handle the event must unmap (what `unmap-ops` matches against).
    private(set) var unmapped: Set<GrantHandle> = []

    init(environment: EnvironmentRecord) {
        observedMaps = environment.mapBatches
    }

    /// One map hypercall of `ops`: the handle each op returned, nil where it
    /// failed (every op of a hypercall that failed as a whole).
    mutating func map(_ ops: [ExpectedMapOp]) -> [GrantHandle?] {
        mapBatches.append(ops)
        defer { nextObserved += 1 }
        guard nextObserved < observedMaps.count, let results = observedMaps[nextObserved].results else {
            return Array(repeating: nil, count: ops.count)
        }
        return ops.indices.map { index in
            index < results.count && results[index].status == .okay ? results[index].handle : nil
        }
    }

    /// `handles` unmapped in order, in hypercalls of at most 11.
    mutating func unmap(_ handles: [GrantHandle]) {
        var start = 0
        while start < handles.count {
            let end = min(start + Blkif.maxSegmentsPerRequest, handles.count)
            unmapInOneHypercall(Array(handles[start..<end]))
            start = end
        }
    }

    /// `handles` unmapped in order by one hypercall, however many they are
    /// (none for none: docs/generations.md, G2018 "Unmapping").
    mutating func unmapInOneHypercall(_ handles: [GrantHandle]) {
        guard !handles.isEmpty else { return }
        unmapBatches.append(handles)
        unmapped.formUnion(handles)
    }
}
